"""Where a worker's packets come from: one RTSP session, behind one small interface.

Two implementations, chosen by ``RecorderConfig.rtsp_client``:

- ``native`` (default): :class:`recorder.rtsp_native.NativeRtspInput`, labwitness's
  own RTSP client, RTP over TCP, TLS or UDP (a fraction of FFmpeg's CPU per stream, see there).
- ``ffmpeg``: :class:`PyAVInput`, FFmpeg's RTSP demuxer through PyAV.

Both hand the worker the same things: codec facts, a track description per
output stream for :class:`recorder.segmenter.SegmentWriter` (audio: the camera's own,
which the worker copies or transcodes, :mod:`recorder.audio_transcode`), and
packets with integer timestamps: the camera's presentation times, and decode times derived
from them by :class:`recorder.reorder.DecodeTimes` in both clients (FFmpeg's
own decode times are missing for a B-frame stream's first frames, and its
first IDR comes without any timestamp).  ``audio_codec`` names the camera's audio even
when its packets are not handed out (``audio`` None), so that the worker can
say that it is not recorded.  Both raise :class:`StreamError` with the gap reason for
every failure of the camera or the network, so the worker's segmenting,
timing and spool logic is the same whichever client is used.
"""

from __future__ import annotations

import errno
import socket
import time
from fractions import Fraction
from typing import Callable, Iterator, Protocol
from urllib.parse import urlsplit

import av

from labwitness.errors import StreamError, ValidationError
from labwitness.url_secrets import redact_text, redact_url
from labwitness.media.h26x import find_sps, sps_reorder
from recorder.reorder import DecodeTimes
from recorder.audio_transcode import G711_SILENCE
from recorder.rtsp_native import NativeRtspInput
from recorder.rtsp_url import check_rtsp_url
from recorder.segmenter import MP4_AUDIO, VIDEO_CODECS, Track

RTSP_CLIENTS = ("ffmpeg", "native")

#: (is_audio, packet, dts, pts); video dts/pts in the input's video time base,
#: audio packets carry their own timestamps in the audio track's time base
Item = tuple[bool, av.Packet, int, int]


class StreamInput(Protocol):
    video_codec: str  # "h264" | "hevc"
    audio_codec: str  # the camera's audio codec (FFmpeg's name), handed out or not; "" when it sends none
    width: int
    height: int
    time_base: Fraction  # video
    frame_ticks: int  # nominal frame duration in time_base units

    @property
    def video(self) -> Track: ...

    @property
    def audio(self) -> Track | None: ...

    def packets(self) -> Iterator[Item]: ...

    def close(self) -> None: ...


def classify(exc: BaseException) -> tuple[str, str]:
    """Map an FFmpeg/PyAV/socket failure to (gap reason, human message)."""
    msg = f"{type(exc).__name__}: {exc}"
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and not isinstance(exc, av.error.FFmpegError) and getattr(exc, "filename", None):
        # a local file (the spool), not the camera: FFmpeg's errors carry the URL as their
        # filename, Python's socket errors carry none
        return "spool_error", f"本地缓存读写失败 / local spool I/O failed: {msg}"
    if isinstance(exc, av.error.HTTPUnauthorizedError) or code in (errno.EACCES, errno.EPERM) or "401" in str(exc):
        return "auth_failed", f"摄像机拒绝了用户名或密码 / camera rejected the credentials (401): {msg}"
    if isinstance(exc, (av.error.ConnectionRefusedError, ConnectionRefusedError)) or code == errno.ECONNREFUSED:
        return "refused", f"连接被拒绝 / connection refused: {msg}"
    if isinstance(exc, (av.error.ExitError, TimeoutError)) or code in (errno.ETIMEDOUT, errno.EAGAIN) or "timed out" in str(exc).lower():
        return "timeout", f"超时 / timed out: {msg}"
    if isinstance(exc, (av.error.EOFError, ConnectionResetError, BrokenPipeError)) or code in (errno.ECONNRESET, errno.EPIPE):
        return "stream_ended", f"码流结束 / stream ended: {msg}"
    if isinstance(exc, av.error.InvalidDataError):
        return "decode_error", f"数据无效 / invalid data: {msg}"
    if isinstance(exc, (av.error.HTTPNotFoundError, av.error.HTTPClientError)) or code in (errno.ENOENT,):
        return "not_found", f"码流地址不存在 / stream not found on camera: {msg}"
    if isinstance(exc, (OSError, av.error.FFmpegError)) and code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
        return "unreachable", f"主机不可达 / host unreachable: {msg}"
    return "stream_error", msg


def resolvable(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except OSError:
        return False


def redact(url: str) -> str:
    """The URL without its secrets (password, secret query values), for logs and gap details."""
    return redact_url(url)


def open_input(url: str, client: str, open_timeout_s: float, read_timeout_s: float, *,
               on_loss: Callable[[int], None] | None = None, **native) -> StreamInput:
    """Open one RTSP session with the configured client; StreamError on failure.  ``native``:
    the native client's options (transport, tls_pins, on_new_pin, keepalive_max_s)."""
    try:
        check_rtsp_url(url)
    except ValidationError as e:  # a URL stored before the doors checked it fully: a gap, not a crash
        raise StreamError("not_rtsp", str(e)) from e
    if client == "native":
        return NativeRtspInput.open(url, open_timeout_s, read_timeout_s, on_loss=on_loss, **native)
    return PyAVInput.open(url, open_timeout_s, read_timeout_s)


class PyAVInput:
    """FFmpeg's RTSP client (through PyAV): the reference implementation."""

    def __init__(self, url: str, container: av.container.InputContainer, read_timeout_s: float) -> None:
        self.url = url
        self.container = container
        self.read_timeout_s = read_timeout_s
        try:
            video = next((s for s in container.streams.video), None)
            if video is None:
                raise StreamError("no_video", f"码流中没有视频 / the stream has no video track [{redact(url)}]")
            vcodec = video.codec_context.name
            if vcodec not in VIDEO_CODECS:
                raise StreamError("unsupported_codec", f"不支持的视频编码 / video codec {vcodec!r} is not H.264/H.265")
        except BaseException:
            self.close()
            raise
        self._video = video
        # the first audio stream whose packets the worker can record (copied, or G.711 transcoded)
        # is demuxed; else the first one is only named (the status says it is not recorded)
        audios = list(container.streams.audio)
        recordable = MP4_AUDIO | G711_SILENCE.keys()
        self._audio = next((s for s in audios if s.codec_context.name in recordable), None)
        self.video_codec = vcodec
        shown = self._audio if self._audio is not None else (audios[0] if audios else None)
        self.audio_codec = (shown.codec_context.name or "unknown") if shown is not None else ""
        self.time_base = video.time_base
        self.frame_ticks = self._frame_ticks(video)

    @property
    def video(self) -> Track:
        return self._video

    @property
    def audio(self) -> Track | None:
        return self._audio

    @property
    def width(self) -> int:
        return self._video.codec_context.width or 0

    @property
    def height(self) -> int:
        return self._video.codec_context.height or 0

    @classmethod
    def open(cls, url: str, open_timeout_s: float, read_timeout_s: float) -> "PyAVInput":
        t0 = time.monotonic()
        try:
            container = av.open(
                url,
                options={"rtsp_transport": "tcp", "timeout": str(int(read_timeout_s * 1e6)),
                         "analyzeduration": "2000000", "probesize": "2000000"},
                # Reads are bounded by FFmpeg's own RTSP "timeout" above. PyAV's read
                # timeout would run a Python interrupt callback on every FFmpeg I/O
                # check (~3,200/s per stream, taking the GIL each time): it doubled
                # the recorder's CPU in bench/record and fired falsely under load.
                timeout=(open_timeout_s, None),
            )
        except Exception as e:
            reason, message = classify(e)
            if isinstance(e, av.error.InvalidDataError):
                # FFmpeg reports both a silent peer (its read timed out) and a
                # peer that is not an RTSP server as "invalid data"; the time
                # it took tells them apart.
                if time.monotonic() - t0 >= 0.9 * min(open_timeout_s, read_timeout_s):
                    reason, message = "timeout", f"超时：设备无应答 / timed out: the device did not answer ({message})"
                else:
                    reason, message = "not_rtsp", f"设备未按 RTSP 协议应答 / the device did not answer as an RTSP server ({message})"
            elif reason == "stream_error" and not resolvable(urlsplit(url).hostname or ""):
                reason, message = "unreachable", f"无法解析主机名 / cannot resolve the camera's host name ({message})"
            raise StreamError(reason, f"{_scrub(message, url)} [{redact(url)}]") from e
        return cls(url, container, read_timeout_s)

    def packets(self) -> Iterator[Item]:
        streams = [self._video] + ([self._audio] if self._audio is not None else [])
        times: DecodeTimes[av.Packet] | None = None
        last_arrival = time.monotonic()
        failure: Exception | None = None
        try:
            for pkt in self.container.demux(streams):
                last_arrival = time.monotonic()
                if pkt.stream.type == "audio":
                    yield True, pkt, 0, 0
                    continue
                if pkt.size == 0:
                    continue  # demuxer flush packet at end of stream
                if times is None:
                    times = DecodeTimes(self.frame_ticks, self._declared_depth(pkt))
                elif times.learning and pkt.is_keyframe:  # parameter sets in-band, after the first frames
                    for p, dts, pts in times.declare(self._declared_depth(pkt)):
                        yield False, p, dts, pts
                # FFmpeg's own dts are not used: its RTSP demuxer gives none for the first
                # frames of a stream with B-frames (and no pts for the first IDR); the
                # camera's presentation times, in decode order, give them all (recorder.reorder)
                for p, dts, pts in times.push(pkt, pkt.pts):
                    yield False, p, dts, pts
        except (av.error.FFmpegError, OSError) as e:
            failure = e
        if times is not None:
            for p, dts, pts in times.flush():  # frames held back for the reorder depth are footage too
                yield False, p, dts, pts
        if isinstance(failure, av.error.FFmpegError):
            reason, message = classify(failure)
            if reason in ("decode_error", "stream_error") and time.monotonic() - last_arrival >= 0.9 * self.read_timeout_s:
                reason, message = "timeout", f"超时：码流中断 / timed out: no data for {self.read_timeout_s:.0f}s ({message})"
            raise StreamError(reason, _scrub(message, self.url)) from failure
        if failure is not None:
            reason, message = classify(failure)
            raise StreamError(reason, _scrub(message, self.url)) from failure

    def _declared_depth(self, first: av.Packet) -> int | None:
        """The reorder depth the SPS declares: in FFmpeg's extradata (the SDP's parameter
        sets), else in the first packet (in-band parameter sets)."""
        for data in (self._video.codec_context.extradata, bytes(first)):
            sps = find_sps(self.video_codec, data) if data else None
            if sps is not None:
                return sps_reorder(self.video_codec, sps)
        return None

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a broken session must not hide why it broke
            pass

    @staticmethod
    def _frame_ticks(video) -> int:
        rate = video.average_rate or video.guessed_rate or video.base_rate or Fraction(25)
        try:
            ticks = int(round(1 / (Fraction(rate) * video.time_base)))
        except (ZeroDivisionError, TypeError):
            ticks = 0
        return ticks if ticks > 0 else max(1, int(round(Fraction(1, 25) / video.time_base)))


def _scrub(text: str, url: str) -> str:
    """FFmpeg quotes the URL in its errors (in other spellings too): never let a password through."""
    return redact_text(text.replace(url, redact(url)))
