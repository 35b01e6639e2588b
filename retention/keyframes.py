"""One keyframe every N seconds of a fragmented-MP4 segment, reading only those bytes.

A pipeline stage with one job: ``sample_keyframes(source, every_s)`` ->
decoded keyframes (:class:`retention.keyframe_decode.Keyframe`), never the whole
stream.  This module is the pipeline and its slow path; its stages are
:mod:`retention.byte_sources` (where the bytes come from),
:mod:`labwitness.media.mp4` (the boxes), :mod:`retention.keyframe_locate` (steps
1-3) and :mod:`retention.keyframe_decode` (step 4).

How (the recorder writes ``frag_keyframe+empty_moov+default_base_moof`` with
1 s fragments, see ``recorder.segmenter``):

1. Read the head of the object: ``ftyp`` + ``moov`` (the init segment) gives
   the video track id, its timescale, the ``trex`` defaults and the decoder
   configuration (``avcC`` / ``hvcC`` inside ``avc1|avc3|hvc1|hev1``).
2. Read the tail: FFmpeg ends a fragmented file with ``mfra`` (``tfra`` lists
   the time and ``moof`` offset of *every* fragment; ``mfro`` at the very end
   gives the size of ``mfra``).  A segment cut short by recovery after a crash
   has no ``mfra``; then the top-level boxes are walked instead (for a remote
   object the whole object is fetched once for that: rare).
3. ``frag_keyframe`` cuts a fragment before every keyframe, so every keyframe
   is the first sample of a fragment; ``frag_duration`` also cuts *between*
   keyframes (GOP 2 s, 1 s fragments: every other fragment starts with a
   P-frame).  For each due time, fragments from the first one at or after it
   are read (``moof`` only, a few hundred bytes) until one whose first sample
   is a sync sample (``trun`` first-sample flags / ``tfhd`` / ``trex``
   defaults, bit ``sample_is_non_sync_sample``).
4. That one sample (one IDR access unit, length-prefixed NAL units) is read
   with a ranged read and decoded alone by a PyAV codec context opened with
   the track's ``avcC``/``hvcC`` as extradata.

Cost per keyframe: one or two ranged reads and one intra-frame decode.  If the
boxes cannot be parsed (not an fMP4, unknown codec), :func:`sample_keyframes`
falls back to demuxing the whole file with PyAV and ``skip_frame='NONKEY'``.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

import av

from labwitness.media.mp4 import NeedMore, ParseError
from retention.byte_sources import ByteSource
from retention.keyframe_decode import Keyframe, KeyframeDecoder, coded_picture
from retention.keyframe_locate import locate_keyframes

log = logging.getLogger(__name__)


@dataclass
class SampleStats:
    keyframes: int = 0
    reads: int = 0
    fallback: bool = False
    errors: list[str] = field(default_factory=list)


def sample_keyframes(src: ByteSource, every_s: float, first_at_s: float = 0.0, *,
                     decoder: KeyframeDecoder | None = None, stats: SampleStats | None = None,
                     whole: Callable[[], bytes] | None = None, lazy: bool = False) -> list[Keyframe]:
    """Keyframes of one segment, ``every_s`` apart (see :func:`retention.keyframe_locate.locate_keyframes`),
    decoded now, or with ``lazy`` when their :attr:`Keyframe.frame` is first read.

    Falls back to demuxing the whole object (``whole()``, default: one read of
    all of ``src``) with PyAV, ``skip_frame='NONKEY'``, when the boxes do not parse.
    """
    decoder = decoder or KeyframeDecoder()
    stats = stats if stats is not None else SampleStats()
    try:
        cfg, picked, r = locate_keyframes(src, every_s, first_at_s, read_hint=decoder.read_hint)
        decoder.read_hint = r.hint
        out = []
        for k in picked:
            coded, digest = coded_picture(cfg.codec, cfg.extradata, k.data)
            kf = Keyframe(k.media_s, decode=lambda d=k.data: decoder.decode(cfg.codec, cfg.extradata, d),
                          coded_bytes=coded, digest=digest, activity=k.activity)
            if not lazy:
                kf.frame  # noqa: B018 - decoding now surfaces a bad keyframe here, where the full demux can take over
            out.append(kf)
        stats.keyframes += len(out)
        return out
    except (ParseError, struct.error, IndexError, NeedMore) as e:
        log.warning("segment boxes not usable (%s); decoding its keyframes with a full demux", e)
        stats.fallback = True
        stats.errors.append(str(e)[:200])
    data = whole() if whole is not None else src.read(0, src.size)
    try:
        out = demux_keyframes(io.BytesIO(data), every_s, first_at_s)
    except av.error.FFmpegError as e:
        raise ParseError(f"not decodable even by a full demux: {e}") from e
    stats.keyframes += len(out)
    return out


def demux_keyframes(f: BinaryIO | str, every_s: float, first_at_s: float = 0.0) -> list[Keyframe]:
    """The slow path (and the benchmark's baseline): demux everything, decode keyframes only."""
    out: list[Keyframe] = []
    due = first_at_s
    with av.open(f) as c:
        v = c.streams.video[0]
        v.codec_context.skip_frame = "NONKEY"
        v.thread_type = "SLICE"
        t0 = None
        for pkt in c.demux(v):
            if not pkt.size or not pkt.is_keyframe or pkt.pts is None:
                continue
            if t0 is None:
                t0 = pkt.pts if v.start_time is None else v.start_time
            t = float((pkt.pts - t0) * pkt.time_base)
            if t + 1e-6 < due:
                continue
            try:
                frames = pkt.decode()
            except av.error.FFmpegError:
                continue
            if frames:
                out.append(Keyframe(t, frames[0]))
                due = t + every_s
    return out
