"""labwitness's own RTSP 1.0 client: RTP interleaved over TCP (or TLS), or over UDP, into PyAV packets.

Why hand-written when FFmpeg has an RTSP client: cost.  FFmpeg's RTSP/RTP
demuxer (used through PyAV by :class:`recorder.inputs.PyAVInput`) reads every
interleaved RTP packet with small reads and runs its generic RTP machinery per
packet; measured in ``bench/record`` it costs ~0.58 CPU-s per stream-minute
of 1080p 4 Mbit/s by itself, more than the rest of the recording path.  This
client receives into one 256 KiB buffer (``recv_into``, one system call per
~100 packets) and hands the run of video frames in it to the depacketizer in
one call, which copies each payload once into the frame's buffer
(:meth:`recorder.rtp_depacketize.VideoDepacketizer.walk`).
No Python RTSP library fits: the ones on PyPI are UDP-only, asyncio
frameworks, or wrap FFmpeg/GStreamer themselves.

Scope (a camera recorder's, not a general RTSP stack):

* OPTIONS, DESCRIBE (SDP), SETUP ``RTP/AVP/TCP;unicast;interleaved``, PLAY,
  keep-alive (GET_PARAMETER when the camera lists it, else OPTIONS) at a
  third of the session timeout and at least every 20 s, TEARDOWN on close.
* RTP over UDP (``RTP/AVP;unicast;client_port``) when the camera refuses
  interleaving (:mod:`recorder.rtp_udp`: connected sockets, batched reads,
  in-batch reordering, receiver reports); the worker remembers the choice.
* ``rtsps://``: TLS with the camera's certificate pinned on first use
  (:mod:`recorder.rtsp_conn`).
* Redirects (3xx to OPTIONS/DESCRIBE), at most 3 hops, credentials only to
  the same host and port (:mod:`recorder.rtsp_redirect`).
* Basic and Digest (MD5, ``qop=auth`` or none) with the URL's credentials.
* Video H.264/H.265, with or without B-frames: RTP gives each frame its
  presentation time, in decode order; decode timestamps are derived from them
  (:mod:`recorder.reorder`, the reorder depth from the SPS or learned).
* Audio AAC (MPEG4-GENERIC AAC-hbr/lbr) and G.711 (PCMA/PCMU,
  handed out as it comes; the worker transcodes it to AAC, :mod:`recorder.audio_transcode`).
  Other audio (G.726, ...) is not set up; ``audio_codec`` still names it, so the
  worker can say in the camera's status that its audio is not recorded.
* Errors are :class:`StreamError` with the worker's gap reasons.
* A/V alignment from PLAY's ``RTP-Info`` (rtptime per track); without it
  audio is aligned to video by arrival.  RTCP sender reports are parsed and
  kept (``sender_reports``; the video's, ``video_sender_report``, dates the
  camera's clock: :mod:`recorder.stream_clock`); RTCP BYE ends the stream like FFmpeg's EOF.
* Not supported: RTSP over HTTP tunnelling, multicast.  Use
  ``LABWITNESS_RTSP_CLIENT=ffmpeg`` for those.

Parts, one job a module: :mod:`recorder.sdp` (the DESCRIBE answer),
:mod:`recorder.rtsp_auth` (Basic/Digest), :mod:`recorder.rtsp_conn` (the TCP
connection: requests, receive buffer, keep-alive, TEARDOWN),
:mod:`recorder.rtsp_session` (OPTIONS to PLAY) and this module: the
:class:`recorder.inputs.StreamInput` over them, whose packet loop walks the
receive buffer, paces the reads and aligns audio to video.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from fractions import Fraction
from typing import Callable, Iterator

import av

from labwitness.errors import StreamError
from labwitness.media.aac import adts_header
from labwitness.media.h26x import h264_dimensions, h265_dimensions, sps_reorder
from labwitness.url_secrets import redact_url
from recorder.reorder import DecodeTimes
from recorder.rtcp import SenderReport, parse_rtcp
from recorder.rtp_audio import AacDepacketizer, G711Depacketizer
from recorder.rtp_depacketize import VideoDepacketizer
from recorder.rtsp_conn import RtspConnection
from recorder.rtsp_redirect import MAX_HOPS, redirect_target
from recorder.rtsp_session import AacTrack, Moved, start_session
from recorder.segmenter import TrackTemplate

log = logging.getLogger(__name__)

#: After a small read, wait this long before the next one so that each receive
#: takes a batch of packets.  A camera sends its ~400 packets/s as they are
#: made; receiving them as they come costs one thread wake-up and one GIL
#: hand-over per packet or two, which on a 2-core box with dozens of camera
#: threads was most of the recorder's CPU (perf: futex waits, context switches
#: and the scheduler, over half of the process).  bench/record, 10 streams,
#: CPU-s per stream-minute in the recording window, same day: 100 ms 0.36,
#: 250 ms 0.25, 500 ms 0.21 (plain ``ffmpeg -c copy``: 0.40).  Half a second of
#: delay is nothing to a recorder: the session's wall clock is anchored on the
#: least-delayed packet (recorder.timing), which the last packet of some batch
#: always is; a segment closes at most this much later; and the kernel's
#: receive buffer holds the half second, so the camera never waits on us: the
#: pause is shortened to what half the socket's current receive buffer holds
#: at the session's measured rate (:meth:`NativeRtspInput._pause`), which on a
#: LAN starts near 128 KiB and grows as Linux autotunes it.
BATCH_WAIT_S = 0.5
#: shortest pause, and the pause for the first second, before the rate is known
_MIN_WAIT_S = 0.05
_FIRST_WAIT_S = 0.1
#: a read at least this large means packets are queued: read again at once
_BATCH_BYTES = 16 * 1024
VIDEO_TB = Fraction(1, 90000)


class NativeRtspInput:
    """One RTSP session; a :class:`recorder.inputs.StreamInput`."""

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float,
                 on_loss: Callable[[int], None] | None = None, *, transport: str = "tcp",
                 tls_pins: dict[str, str] | None = None,
                 on_new_pin: Callable[[str, str], None] | None = None,
                 keepalive_max_s: float | None = None) -> None:
        self._conn_args = dict(tls_pins=tls_pins, on_new_pin=on_new_pin, keepalive_max_s=keepalive_max_s)
        self.conn = RtspConnection(url, open_timeout_s, read_timeout_s, **self._conn_args)
        self.shown = self.conn.shown  # the URL without its secrets, for logs
        self.url = url
        self.transport = transport  # "tcp" | "udp": asked first; what the session used once open
        self.redirected_to = ""  # the redacted URL the camera redirected to, if it did
        self.on_loss = on_loss or (lambda n: None)
        self.sender_reports: dict[int, SenderReport] = {}  # by RTCP channel
        self.video_codec = ""
        self.audio_codec = ""  # the camera's audio codec (FFmpeg's name), received or not; "" none
        self.width = self.height = 0
        self.time_base = VIDEO_TB
        self.frame_ticks = 3600
        self._vdep: VideoDepacketizer | None = None
        self._adep: AacDepacketizer | G711Depacketizer | None = None
        self._asc = b""
        self._arate = 0
        self._achannels = 0
        self._vch, self._ach = 0, -1
        self._rtp_info: dict[int, int] = {}  # channel -> rtptime at PLAY
        self._a_shift: int | None = None
        self._last_vts: int | None = None
        self._times: DecodeTimes[av.Packet] | None = None
        self._templates: dict[str, TrackTemplate] = {}
        self._template_inputs: list = []
        self._video_track: TrackTemplate | None = None
        self.skipped_before_params = 0
        self.batch_wait_s = BATCH_WAIT_S

    # -- StreamInput -------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, open_timeout_s: float, read_timeout_s: float, *,
             on_loss: Callable[[int], None] | None = None, **kw) -> "NativeRtspInput":
        self = cls(url, open_timeout_s, read_timeout_s, on_loss, **kw)
        try:
            self._start()
        except BaseException:
            self.close(teardown=False)
            raise
        return self

    @property
    def video(self) -> TrackTemplate:
        dep = self._vdep
        assert dep is not None
        if self._video_track is None or dep.params_changed:
            dep.params_changed = False
            self._update_dimensions()
            self._video_track = TrackTemplate(self._template(self.video_codec), VIDEO_TB, dep.annexb_params(),
                                              width=self.width, height=self.height)
        return self._video_track

    @property
    def audio(self) -> TrackTemplate | None:
        if self._adep is None:
            return None
        layout = {1: "mono", 2: "stereo"}.get(self._achannels, "")
        return TrackTemplate(self._template(self.audio_codec), Fraction(1, self._arate), self._asc,
                             sample_rate=self._arate, layout=layout)

    @property
    def video_sender_report(self) -> SenderReport | None:
        """The latest RTCP sender report of the video track (camera wall time of one RTP time)."""
        return self.sender_reports.get(self._vch + 1)

    def close(self, teardown: bool = True) -> None:
        for c in self._template_inputs:
            c.close()
        self._template_inputs.clear()
        self.conn.close(teardown)

    # -- session set-up ----------------------------------------------------------------
    def _start(self) -> None:
        url, why_no_credentials = self.url, ""
        for hop in range(MAX_HOPS + 1):
            self.conn.connect()
            try:
                s = start_session(self.conn, self.transport)
            except StreamError as e:
                if e.reason == "auth_failed" and why_no_credentials:
                    raise StreamError("auth_failed", f"{e}; {why_no_credentials}") from e
                raise
            if not isinstance(s, Moved):
                break
            if hop == MAX_HOPS:
                raise self.conn.fail("stream_error", f"重定向次数过多 / more than {MAX_HOPS} redirects")
            target = redirect_target(url, s.location)
            self.conn.close(teardown=False)
            log.info("%s: the camera redirects (%d) to %s%s", self.shown, s.status, redact_url(target.url),
                     " (without the credentials)" if target.why_not else "")
            url, why_no_credentials = target.url, target.why_not or why_no_credentials
            self.conn = RtspConnection(url, self.conn.open_timeout_s, self.conn.read_timeout_s, **self._conn_args)
            self.redirected_to = self.conn.shown
        self.transport = self.conn.transport
        self.video_codec = s.video_codec
        self._vdep = VideoDepacketizer(s.video_codec, s.video_params)
        self._update_dimensions()
        if s.framerate > 0:
            self.frame_ticks = max(1, round(90000 / s.framerate))
        self._vch = s.video_channel
        self.audio_codec = s.audio_codec
        a = s.audio
        if isinstance(a, AacTrack):
            self._asc, self._arate, self._achannels, self._ach = a.config, a.rate, a.channels, a.channel
            self._adep = AacDepacketizer(a.size_length, a.index_length, a.index_delta_length)
        elif a is not None:  # G.711: the payload is the samples
            self._arate, self._achannels, self._ach = a.rate, a.channels, a.channel
            self._adep = G711Depacketizer()
        self._rtp_info = s.rtp_info

    def _template(self, codec: str) -> av.stream.Stream:
        """A stream of a tiny in-memory input, only to give the muxer the codec id and type."""
        s = self._templates.get(codec)
        if s is None:
            options = None
            if codec == "aac":
                data, fmt = adts_header(self._asc, 0) * 2, "aac"
            elif codec in ("pcm_alaw", "pcm_mulaw"):  # FFmpeg's raw G.711 demuxers
                data, fmt = bytes(160), codec[4:]
                options = {"sample_rate": str(self._arate), "ch_layout": "stereo" if self._achannels == 2 else "mono"}
            else:
                assert self._vdep is not None
                data, fmt = self._vdep.annexb_params(), codec
            c = av.open(io.BytesIO(data), format=fmt, options=options)
            self._template_inputs.append(c)
            s = self._templates[codec] = (c.streams.video if codec in ("h264", "hevc") else c.streams.audio)[0]
        return s

    def _update_dimensions(self) -> None:
        assert self._vdep is not None
        sps = self._vdep.sps()
        if sps is None:
            return
        try:
            self.width, self.height = (h264_dimensions if self.video_codec == "h264" else h265_dimensions)(sps)
        except (ValueError, IndexError):
            log.warning("%s: could not read the picture size from the SPS", self.shown)

    # -- streaming ---------------------------------------------------------------------
    def packets(self) -> Iterator[tuple[bool, av.Packet, int, int]]:
        conn = self.conn
        vdep, adep = self._vdep, self._adep
        assert vdep is not None
        vwalk, vout = vdep.walk, vdep.out
        apush, aout = (adep.push, adep.out) if adep is not None else (None, [])
        vch, ach = self._vch, self._ach
        Packet = av.Packet
        atb = Fraction(1, self._arate) if adep is not None else None
        lost_seen = 0
        bye = False
        last_read = _BATCH_BYTES
        t_start, got = time.monotonic(), 0
        while True:
            buf, mv = conn.buf, conn.mv
            pos, end = conn.pos, conn.end
            # walk every complete interleaved frame in the buffer
            while end - pos >= 4:
                if buf[pos] != 0x24:  # not '$': an RTSP message (keep-alive answer)
                    conn.pos = pos
                    if conn.take_message() is None:
                        break
                    pos = conn.pos
                    continue
                ch = buf[pos + 1]
                if ch == vch:  # the video's run of frames, in one call
                    taken = vwalk(buf, mv, pos, end, vch)
                    if taken == pos:
                        break  # an incomplete frame
                    pos = taken
                    continue
                stop = pos + 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
                if stop > end:
                    break
                if ch == ach:
                    apush(mv[pos + 4:stop])
                elif ch & 1:
                    bye = self._rtcp(ch, mv[pos + 4:stop]) or bye
                pos = stop
            conn.pos = pos
            if bye:
                vdep.flush()
            # audio and video of a batch go out interleaved by time, as a demuxer's would: the
            # worker holds audio ahead of the video and finishes a cut segment without audio
            # that comes 2 s of video later (recorder.audio_route), and a batch read after a
            # stall (a loaded machine catching up) can hold more than 2 s of each
            ai, na = 0, len(aout)
            if vout:
                times = self._times
                for au in vout:
                    while ai < na:
                        apkt = self._audio_packet(aout[ai], atb, au.ts)
                        if apkt is None:
                            break  # after this picture (or no video yet to align it with)
                        ai += 1
                        yield True, apkt, 0, 0
                    if not vdep.ready:
                        self.skipped_before_params += 1  # no SPS/PPS yet (none in the SDP): cannot describe it
                        continue
                    if times is None:
                        times = self._times = self._decode_times()
                    pkt = Packet(au.data)  # PyAV keeps the access unit's bytearray as its data: no copy
                    pkt.time_base = VIDEO_TB
                    pkt.is_keyframe = au.key
                    if au.damaged:
                        pkt.is_corrupt = True
                    self._last_vts = au.ts
                    for ready, dts, pts in times.push(pkt, au.ts):
                        ready.pts, ready.dts = pts, dts
                        yield False, ready, dts, pts
                vout.clear()
            if ai < na:
                for au in aout[ai:]:
                    apkt = self._audio_packet(au, atb, None)
                    if apkt is not None:
                        yield True, apkt, 0, 0
            aout.clear()
            lost = vdep.lost + (adep.lost if adep is not None else 0)
            if lost != lost_seen:
                self.on_loss(lost - lost_seen)
                lost_seen = lost
            if bye:
                yield from self._flush_video()
                return  # the camera ended the stream (RTCP BYE), as FFmpeg's end of file
            if time.monotonic() >= conn.next_keepalive:
                conn.keepalive()
            if last_read < _BATCH_BYTES:
                time.sleep(self._pause(got, time.monotonic() - t_start))
            try:
                last_read = conn.recv()
            except StreamError:
                yield from self._flush_video()  # frames held for the reorder depth are footage too
                raise
            got += last_read
            if last_read == 0:
                vdep.flush()
                if vout:
                    continue  # hand out the last access unit, then end
                yield from self._flush_video()
                raise conn.fail("stream_ended", "码流结束 / stream ended: the camera closed the connection")

    def _decode_times(self) -> DecodeTimes[av.Packet]:
        """Decode timestamps for this session's frames: RTP gives presentation times in decode order."""
        assert self._vdep is not None
        sps = self._vdep.sps()
        depth = sps_reorder(self.video_codec, sps) if sps is not None else None
        if depth is None:
            log.info("%s: the SPS declares no reorder depth: learning it from the stream", self.shown)
        return DecodeTimes(self.frame_ticks, depth)

    def _flush_video(self) -> Iterator[tuple[bool, av.Packet, int, int]]:
        """Frames held back while the reorder depth is learned, at the end of the stream."""
        if self._times is not None:
            for pkt, dts, pts in self._times.flush():
                pkt.pts, pkt.dts = pts, dts
                yield False, pkt, dts, pts

    def _pause(self, got: int, elapsed: float) -> float:
        """How long to wait before the next read: ``batch_wait_s``, unless the socket's
        receive buffer could not hold that long at this session's rate (Linux reports
        SO_RCVBUF doubled for its bookkeeping: about half of it is room for data)."""
        if elapsed < 1.0 or got <= 0:
            return min(self.batch_wait_s, _FIRST_WAIT_S)
        if self.conn.udp is not None:
            room = self.conn.udp.room()
        else:
            try:
                room = self.conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) / 2
            except OSError:
                room = 64 * 1024
        return max(min(_MIN_WAIT_S, self.batch_wait_s), min(self.batch_wait_s, room / (got / elapsed)))

    def _rtcp(self, ch: int, p: memoryview) -> bool:
        reports, bye = parse_rtcp(p)
        for r in reports:
            self.sender_reports[ch] = r
        return bye and ch == self._vch + 1

    def _audio_packet(self, au, atb: Fraction | None, before_vts: int | None) -> av.Packet | None:
        """The audio unit as a packet on the video's media timeline; None when it is not due
        before the picture at ``before_vts`` (None: due now), or cannot be aligned yet."""
        shift = self._a_shift
        if shift is None:
            shift = self._audio_shift(au.ts)
            if shift is None:
                return None  # no video yet to align with (dropped by the caller's last pass)
        t = au.ts + shift
        if before_vts is not None and t * 90000 > before_vts * self._arate:
            return None
        pkt = av.Packet(au.data)
        pkt.time_base = atb
        pkt.pts = pkt.dts = t
        return pkt

    def _audio_shift(self, a_ts: int) -> int | None:
        """Offset that puts audio RTP time on the video's media timeline (in audio clock units)."""
        rate = self._arate
        v0, a0 = self._rtp_info.get(self._vch), self._rtp_info.get(self._ach)
        if v0 is not None and a0 is not None:
            # both tracks' rtptime at the PLAY instant: exact alignment
            self._a_shift = round(v0 * rate / 90000) - a0
        elif self._last_vts is not None:
            # no RTP-Info: assume the audio frame arrived with the latest video frame
            self._a_shift = round(self._last_vts * rate / 90000) - a_ts
        return self._a_shift
