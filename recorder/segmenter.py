"""Stream copy of demuxed packets into one fragmented MP4 file (no decode).

``frag_keyframe+empty_moov+default_base_moof`` with a 1 s ``frag_duration``
makes the file playable fragment by fragment: a crash loses at most the
fragment being built.  Each segment's timestamps are rebased so that its first
decode time is 0; with B-frames each sample carries its composition offset
(pts - dts, in the ``trun``), so the first picture is shown at its own offset
(the stream's reorder depth in frames), not at 0.  No edit list is written
(:data:`MP4_OPTIONS`: ``use_editlist=0``); audio keeps its place on the same
timeline, so a track may start a little after 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Union

import av

#: audio codecs the MP4 muxer carries; others are left out (and counted)
MP4_AUDIO = {"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"}
VIDEO_CODECS = {"h264", "hevc"}


@dataclass(frozen=True)
class TrackTemplate:
    """One track described by codec parameters, for inputs without a PyAV input stream.

    ``stream`` only supplies the codec id and type (a stream of a tiny in-memory
    input); the rest is set on each segment's output stream before its header
    is written.  ``extradata`` may be Annex B parameter sets (H.264/H.265: the
    MP4 muxer builds avcC/hvcC from them) or an AudioSpecificConfig (AAC).
    """

    stream: av.stream.Stream
    time_base: Fraction
    extradata: bytes = b""
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    layout: str = ""


#: what SegmentWriter accepts per track: the demuxer's own stream (PyAV input) or a template
Track = Union[av.stream.Stream, TrackTemplate]


def _add_track(container: av.container.OutputContainer, t: Track) -> av.stream.Stream:
    if not isinstance(t, TrackTemplate):
        return container.add_stream_from_template(t)
    s = container.add_stream_from_template(t.stream)
    s.time_base = t.time_base
    cc = s.codec_context
    if s.type == "video":  # audio templates keep a decoder context, whose time base is read-only
        cc.time_base = t.time_base
    if t.extradata:
        cc.extradata = t.extradata
    if t.width:
        cc.width, cc.height = t.width, t.height
    if t.sample_rate:
        cc.sample_rate = t.sample_rate
    if t.layout:
        cc.layout = t.layout
    return s


@dataclass
class SegmentStats:
    frames: int = 0
    keyframes: int = 0
    audio_packets: int = 0
    first_dts: int | None = None
    last_dts: int | None = None


#: PyAV's I/O buffer between the muxer and the spool file.  Its 32 KiB default
#: cut each 1 s fragment (~550 KB at 4 Mbit/s) into ~17 Python write calls, each a
#: syscall, a hash update and a quota charge; with 1 MiB a fragment is one write.
#: ``flush_packets`` still hands every finished fragment to the file at once.
_IO_BUFFER = 1 << 20


#: The MP4 muxer's options for a fragmented file whose tracks keep their start times.
#: By default (no edit list in a fragmented file, negative timestamps "made zero") the
#: muxer moves a track's first sample to 0 and stretches it, so audio starting 0.1 s
#: after the video would play its first frame 0.1 s early with a gap after it.  With
#: ``frag_discont`` and timestamps left as they are, each track's first fragment
#: starts (``tfdt``) at the sample's own time.  Measured with FFmpeg 8.1 (PyAV 18).
MP4_OPTIONS = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof+frag_discont",
    "use_editlist": "0",
    "avoid_negative_ts": "make_non_negative",
}


class SegmentWriter:
    def __init__(self, out: BinaryIO, video: Track, audio: Track | None,
                 base_dts: int, frag_duration_us: int = 1_000_000) -> None:
        self.container = av.open(out, mode="w", format="mp4", options={
            **MP4_OPTIONS,
            "frag_duration": str(frag_duration_us),
            "flush_packets": "1",
        }, buffer_size=_IO_BUFFER)
        self._out = out
        self.v_in = video
        self.v_out = _add_track(self.container, video)
        self.a_in = audio
        self.a_out = _add_track(self.container, audio) if audio is not None else None
        self.base_dts = base_dts  # in video time base
        self.a_base = (
            int(Fraction(base_dts) * video.time_base / audio.time_base) if audio is not None else 0
        )
        self._a_last = -1
        self._v_last = -1
        self.stats = SegmentStats()

    def write_video(self, pkt: av.Packet, dts: int, pts: int) -> None:
        d = dts - self.base_dts
        if d <= self._v_last:  # a camera repeating a timestamp must not abort the muxer
            d = self._v_last + 1
        p = max(pts - self.base_dts, d)
        pkt.dts, pkt.pts = d, p
        self._v_last = d
        pkt.stream = self.v_out
        self._mux(pkt)
        s = self.stats
        s.frames += 1
        s.keyframes += 1 if pkt.is_keyframe else 0
        if s.first_dts is None:
            s.first_dts = dts
        s.last_dts = dts

    def write_audio(self, pkt: av.Packet) -> None:
        if self.a_out is None or pkt.dts is None:
            return
        d = max(pkt.dts - self.a_base, self._a_last + 1, 0)
        p = d + ((pkt.pts - pkt.dts) if pkt.pts is not None else 0)
        pkt.dts, pkt.pts = d, p
        self._a_last = d
        pkt.stream = self.a_out
        self._mux(pkt)
        self.stats.audio_packets += 1

    def _mux(self, pkt: av.Packet) -> None:
        try:
            self.container.mux_one(pkt)
            return
        except av.error.PyAVCallbackError:
            failed = self._refused()
            if failed is None:
                raise
        raise failed  # (outside the handler: PyAV's cause-less error is not chained to it)

    def close(self) -> None:
        try:
            self.container.close()
            return
        except av.error.PyAVCallbackError:
            failed = self._refused()
            if failed is None:
                raise
        raise failed

    def _refused(self) -> BaseException | None:
        """The output's own refusal (a spool file keeps it as ``failed``: quota, full disk), to
        raise instead of what PyAV raises for every call after a failed write -- "Error in PyAV
        callback" with no cause -- which is all an admin would otherwise read in the log."""
        return getattr(self._out, "failed", None)
