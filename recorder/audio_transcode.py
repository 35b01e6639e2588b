"""A camera's audio on its way into the segments: copied, transcoded from G.711 to AAC, or said to be lost.

Segments are fragmented MP4 played in the browser (MSE) and stitched into
evidence exports.  FFmpeg's MP4 muxer refuses G.711 (``'mp4' format does not
support 'pcm_alaw' codec``) and Chromium plays neither ``alaw`` nor ``ulaw`` in
MP4 (``MediaSource.isTypeSupported`` false), so G.711 -- PCMA/PCMU, the
factory default of many cameras -- is decoded and re-encoded as AAC-LC at its
own rate (8 kHz mono, 32 kbit/s); see Decision 40 (audio) and the cost in
docs/recording.md.  Codecs the MP4 segment carries (AAC, ...) are stream-copied
as before; any other audio (G.726, ...) is not recorded, and the camera's
status says so (:attr:`AudioStage.note`).

Two parts:

* :func:`plan_audio` -- pure policy: codec -> copy | transcode | skip (with the
  note a lab admin reads, 中文 / English).
* :class:`AudioStage` -- one session's audio for the worker: the track the
  segments carry (:attr:`AudioStage.track`) and each camera packet converted on
  its way there (:meth:`AudioStage.convert`).  A transcode is one encoder for
  the whole session, not one per segment: the AAC timeline stays the camera's
  audio timeline (which each input aligns to the video), so segment boundaries
  add no gap and no drift.  Lost RTP packets are filled with G.711 silence
  (up to :data:`MAX_FILL_S`) so that later audio stays in sync; a larger jump or
  a timestamp running backwards starts a new encoder at the new time.

Packets out carry ``pts``/``dts`` in ``1/sample_rate`` on the camera's audio
timeline; the first AAC packet of an encoder is its priming frame, one frame
(1024 samples) before the first G.711 sample, as FFmpeg stamps it, so that the
decoded samples of every packet sit at the time the camera recorded them.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av

from labwitness.media.aac import adts_header
from recorder.segmenter import MP4_AUDIO, Track, TrackTemplate

log = logging.getLogger(__name__)

#: G.711 (RFC 3551 PCMA/PCMU) as FFmpeg names it -> the byte of silence in that law
G711_SILENCE = {"pcm_alaw": 0xD5, "pcm_mulaw": 0xFF}
#: AAC-LC bit rate per channel: at 8 kHz a G.711 channel is 64 kbit/s of 8-bit
#: samples; speech and room sound at 32 kbit/s AAC-LC is transparent enough for
#: evidence and half the size
AAC_BIT_RATE = 32_000
#: FFmpeg's AAC encoder options.  Its default coder ("twoloop") spends twice the CPU
#: of "fast" on 8 kHz G.711 for ~3 dB more signal-to-noise (bench/audio_transcode,
#: docs/recording.md); the camera's 8-bit telephone-band audio is the limit anyway.
AAC_OPTIONS = {"aac_coder": "fast"}
#: G.711 samples gathered before one decode+encode call: an AAC frame's worth (five or
#: six 20 ms RTP packets) instead of a call per packet
BATCH_SAMPLES = 1024
#: a jump in the camera's audio timestamps up to this long is filled with silence
#: (lost packets); a longer one, or one backwards, starts a new encoder there
MAX_FILL_S = 5.0

#: codec names for people (status, logs); FFmpeg's name otherwise
_SHOWN = {"pcm_alaw": "G.711 A-law (PCMA)", "pcm_mulaw": "G.711 μ-law (PCMU)", "g726": "G.726", "g726le": "G.726",
          "adpcm_g726": "G.726", "adpcm_g726le": "G.726", "g722": "G.722", "adpcm_g722": "G.722", "aac": "AAC", "aac_latm": "AAC (LATM)",
          "pcm_s16be": "L16 PCM", "mp3": "MP3", "opus": "Opus"}


def shown_codec(codec: str) -> str:
    return _SHOWN.get(codec, codec)


@dataclass(frozen=True)
class AudioPlan:
    """What happens to a camera's audio: ``none`` (the camera sends none), ``copy``,
    ``transcode`` (G.711 -> AAC) or ``skip`` (not recorded; ``note`` says why)."""

    action: Literal["none", "copy", "transcode", "skip"]
    note: str = ""


def plan_audio(codec: str, delivered: bool = True) -> AudioPlan:
    """The plan for a camera's audio ``codec`` (FFmpeg's name; "" for none).  ``delivered``:
    the RTSP client hands out the track's packets (the native client takes AAC and G.711 only)."""
    if not codec:
        return AudioPlan("none")
    name = shown_codec(codec)
    if codec in MP4_AUDIO or codec in G711_SILENCE:
        if not delivered:
            return AudioPlan("skip", f"音频（{name}）未录制：内置 RTSP 客户端不接收该编码，只录制视频 / audio ({name}) is "
                                     "not recorded: the native RTSP client does not receive it; video only "
                                     "(LABWITNESS_RTSP_CLIENT=ffmpeg records it)")
        return AudioPlan("copy" if codec in MP4_AUDIO else "transcode")
    return AudioPlan("skip", f"音频（{name}）无法录制，只录制视频；请在摄像机上把音频编码设为 AAC 或 G.711 / audio ({name}) "
                             "cannot be recorded, video only: set the camera's audio codec to AAC or G.711")


def _track_params(track: Track) -> tuple[Fraction, int, str]:
    """(packet time base, sample rate, channel layout) of an input's audio track."""
    if isinstance(track, TrackTemplate):
        return track.time_base, track.sample_rate, track.layout or "mono"
    cc = track.codec_context
    return track.time_base, cc.sample_rate, cc.layout.name


def _aac_template(asc: bytes) -> tuple[av.container.InputContainer, av.stream.Stream]:
    """A stream of a tiny in-memory AAC input: gives the muxer the codec id and type."""
    c = av.open(io.BytesIO(adts_header(asc, 0) * 2), format="aac")
    return c, c.streams.audio[0]


class G711ToAac:
    """One session's G.711 -> AAC-LC encoder (FFmpeg's native ``aac``), continuous across segments.

    :meth:`push` takes G.711 packets (payload = one byte per sample and channel,
    RFC 3551) with ``pts`` in ``in_tb``; it answers the AAC packets finished so
    far, stamped in ``1/rate``.  Samples are gathered to :data:`BATCH_SAMPLES`
    before a decode+encode call; PyAV's encoder converts s16 to float and cuts
    1024-sample frames itself.  This class keeps the samples it is given
    contiguous, which is what keeps the AAC timeline the camera's.
    """

    def __init__(self, codec: str, rate: int, layout: str = "mono", in_tb: Fraction | None = None,
                 bit_rate_per_channel: int = AAC_BIT_RATE) -> None:
        if codec not in G711_SILENCE:
            raise ValueError(f"not G.711: {codec!r}")
        self.codec, self.rate, self.layout = codec, rate, layout
        self.time_base = Fraction(1, rate)
        self.in_tb = in_tb or self.time_base
        self.channels = av.AudioLayout(layout).nb_channels
        self.bit_rate = bit_rate_per_channel * self.channels
        self._silence = bytes((G711_SILENCE[codec],))
        self._dec = av.CodecContext.create(codec, "r")
        self._dec.sample_rate, self._dec.layout = rate, layout
        self._enc = self._encoder()  # fails here (ValueError/FFmpegError) for a rate AAC cannot take
        self.asc = bytes(self._enc.extradata or b"")
        self._next: int | None = None  # sample time of the next sample expected
        self._start = 0  # sample time of the first sample gathered in _pending
        self._pending: list[bytes] = []
        self._pending_n = 0
        self.filled = 0  # samples of silence put in for lost packets
        self.restarts = 0
        self._template_input, self._template = _aac_template(self.asc)

    @property
    def track(self) -> TrackTemplate:
        return TrackTemplate(self._template, self.time_base, self.asc, sample_rate=self.rate, layout=self.layout)

    def _encoder(self) -> av.AudioCodecContext:
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate, enc.layout, enc.format = self.rate, self.layout, "fltp"
        enc.bit_rate = self.bit_rate
        enc.time_base = self.time_base
        enc.options = dict(AAC_OPTIONS)
        enc.open()
        return enc

    def push(self, pkt: av.Packet) -> list[av.Packet]:
        pts = pkt.pts
        if pts is None:
            pts = self._next if self._next is not None else 0
        elif self.in_tb != self.time_base:
            pts = round(pts * self.in_tb * self.rate)
        data = bytes(pkt)
        out: list[av.Packet] = []
        if self._next is not None and pts != self._next:
            gap = pts - self._next
            if 0 < gap <= MAX_FILL_S * self.rate:
                self.filled += gap
                self._add(self._silence * (gap * self.channels))
            elif -len(data) // self.channels < gap < 0:
                data = data[-gap * self.channels:]  # overlaps what was encoded: keep the new part only
            else:  # far ahead, or back in time: a new encoder from here
                out += self.flush()
                self._enc = self._encoder()
                self.restarts += 1
        if self._next is None:
            self._start = self._next = pts
        self._add(data)
        if self._pending_n >= BATCH_SAMPLES:
            out += self._drain()
        return out

    def _add(self, data: bytes) -> None:
        n = len(data) // self.channels
        self._pending.append(data)
        self._pending_n += n
        self._next += n

    def _drain(self) -> list[av.Packet]:
        """Decode and encode the samples gathered so far (one call for many RTP packets)."""
        if not self._pending_n:
            return []
        p = av.Packet(b"".join(self._pending))
        p.pts = p.dts = self._start
        p.time_base = self.time_base
        self._start += self._pending_n
        self._pending.clear()
        self._pending_n = 0
        out: list[av.Packet] = []
        for frame in self._dec.decode(p):
            out += self._enc.encode(frame)
        return out

    def flush(self) -> list[av.Packet]:
        """Everything still held: the samples gathered, then the encoder's last packets (the
        partial last frame padded with silence).  The next push starts afresh."""
        if self._next is None:
            return []
        out = self._drain()
        self._next = None
        return out + list(self._enc.encode(None))

    def close(self) -> None:
        self._template_input.close()


class AudioStage:
    """The audio half of one session: what the segments carry (:attr:`track`, :attr:`recorded`)
    and each camera packet on its way there (:meth:`convert`)."""

    def __init__(self, codec: str, plan: AudioPlan, track: Track | None, transcoder: G711ToAac | None = None) -> None:
        self.codec = codec  # the camera's audio codec ("" none)
        self.plan = plan
        self.track = track  # for SegmentWriter; None: no audio in the segments
        self.recorded = ("aac" if transcoder is not None else codec) if track is not None else ""
        self.note = plan.note
        self._tx = transcoder
        self.time_base: Fraction | None = track.time_base if track is not None else None
        self.errors = 0

    @classmethod
    def open(cls, codec: str, track: Track | None) -> "AudioStage":
        """The stage for an input offering audio ``codec`` whose packets come on ``track`` (None: they do not)."""
        plan = plan_audio(codec, track is not None)
        if plan.action == "copy":
            return cls(codec, plan, track)
        if plan.action == "transcode":
            assert track is not None
            tb, rate, layout = _track_params(track)
            try:
                tx = G711ToAac(codec, rate, layout, tb)
            except (ValueError, av.error.FFmpegError) as e:
                name = shown_codec(codec)
                return cls(codec, AudioPlan("skip", f"音频（{name}，{rate} Hz）无法转码为 AAC，只录制视频 / audio ({name}, "
                                                    f"{rate} Hz) cannot be transcoded to AAC, video only: {e}"), None)
            return cls(codec, plan, tx.track, tx)
        return cls(codec, plan, None)

    def convert(self, pkt: av.Packet) -> list[av.Packet]:
        """The packets ``pkt`` becomes in the segments (none while an AAC frame fills)."""
        if self._tx is None:
            return [pkt] if self.track is not None else []
        try:
            return self._tx.push(pkt)
        except av.error.FFmpegError:
            self.errors += 1
            if self.errors == 1:
                log.warning("audio transcode failed on a packet; it is left out (further failures are counted)",
                            exc_info=True)
            return []

    def flush(self) -> list[av.Packet]:
        """At the end of the session: what the encoder still holds."""
        if self._tx is None:
            return []
        try:
            return self._tx.flush()
        except av.error.FFmpegError:
            self.errors += 1
            log.warning("audio transcode flush failed: the session's last %d ms of audio are lost",
                        1024 * 2000 // self._tx.rate, exc_info=True)
            return []

    def close(self) -> None:
        if self._tx is not None:
            self._tx.close()
