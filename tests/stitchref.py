"""``api.media.stitch`` as it was before the prefetching stitch (commit 0a97df1), kept verbatim
as the reference the current stitch must equal byte for byte (tests/test_stitch_prefetch.py):
each segment fetched into a temporary file, then muxed, one at a time, with PyAV's default
I/O buffers and stream probe.  Not used by the product."""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Callable, Sequence

import av

from index.models import Segment
from recorder.segmenter import MP4_OPTIONS
from storage.base import ObjectStore


@dataclass
class StitchResult:
    frames: int = 0
    bytes: int = 0
    sha256: str = ""
    first_ms: int | None = None
    last_ms: int | None = None
    sources: list[dict] = None  # key, version_id, sha256 of every segment used


class _Sink:
    """Counts and hashes what the muxer writes, passing it on."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, b) -> int:
        self.out.write(b)
        self.sha.update(b)
        self.size += len(b)
        return len(b)

    def flush(self) -> None:
        flush = getattr(self.out, "flush", None)
        if flush:
            flush()


def _fetch(store: ObjectStore, seg: Segment):
    tmp = tempfile.TemporaryFile()
    with store.open(seg.key, seg.version_id) as body:
        shutil.copyfileobj(body, tmp, 1 << 20)
    tmp.seek(0)
    return tmp


@dataclass
class _Timing:
    """Per segment and stream, the window arithmetic done once in exact fractions
    so that each packet costs integer compares and one add: output dts =
    input dts + ``off``; a packet is dropped when its dts < ``skip`` (before the
    start keyframe) or >= ``end`` (at or past the window end)."""

    off: int
    end: int
    skip: int | None
    exact: Fraction  # output ticks = input dts + exact (for last_ms)


def _timing(tb: Fraction, vtb: Fraction, v0: int, seg_off: Fraction, end_s: Fraction, skip_before: int | None) -> _Timing:
    # t(seconds from the output origin) = seg_off + dts*tb - v0*vtb; output ticks = t / tb
    c = seg_off / tb - Fraction(v0) * vtb / tb
    skip = None if skip_before is None else math.ceil(Fraction(skip_before) * vtb / tb)
    return _Timing(math.floor(c), math.ceil(end_s / tb - c), skip, c)


def stitch(store: ObjectStore, segments: Sequence[Segment], start_ms: int, end_ms: int, out: BinaryIO,
           progress: Callable[[float], None] | None = None) -> StitchResult:
    segs = sorted((s for s in segments if s.end_ms > start_ms and s.start_ms < end_ms), key=lambda s: s.start_ms)
    result = StitchResult(sources=[])
    if not segs:
        return result
    sink = _Sink(out)
    # (the recorder's options: an audio track keeps its start time rather than being stretched to 0)
    container = av.open(sink, "w", format="mp4", options=dict(MP4_OPTIONS))
    v_out = a_out = None
    origin_ms: int | None = None
    last_v = last_a = -1
    last_video: tuple[int, Fraction, Fraction] | None = None  # (dts, exact offset, time base) of the last frame kept
    try:
        for i, seg in enumerate(segs):
            with _fetch(store, seg) as f:
                v0 = skip_before = None
                if origin_ms is None:  # first segment: find the keyframe at or before the window start
                    with av.open(f) as src:
                        v_in = src.streams.video[0]
                        want = Fraction(max(0, start_ms - seg.start_ms), 1000)
                        for p in src.demux(v_in):
                            if not p.size or p.dts is None:
                                continue
                            if v0 is None:
                                v0 = p.dts
                            if (p.dts - v0) * v_in.time_base > want:
                                break
                            if p.is_keyframe:
                                skip_before = p.dts
                    if v0 is None:
                        continue  # no video in this segment
                    skip_before = v0 if skip_before is None else skip_before
                    origin_ms = seg.start_ms + int((skip_before - v0) * v_in.time_base * 1000)
                    result.first_ms = origin_ms
                    f.seek(0)
                # one demux pass per segment: packets before the first video packet (audio)
                # wait until it fixes the segment's origin v0
                with av.open(f) as src:
                    v_in = src.streams.video[0]
                    a_in = src.streams.audio[0] if src.streams.audio else None
                    if v_out is None:
                        v_out = container.add_stream_from_template(v_in)
                        if a_in is not None:
                            a_out = container.add_stream_from_template(a_in)
                    vtb, v_index = v_in.time_base, v_in.index
                    seg_off, end_s = Fraction(seg.start_ms - origin_ms, 1000), Fraction(end_ms - origin_ms, 1000)
                    tv = ta = None
                    pending = []
                    for p in src.demux([s for s in (v_in, a_in) if s is not None]):
                        if not p.size or p.dts is None:
                            continue
                        if tv is None:
                            if p.stream.index != v_index:
                                pending.append(p)
                                continue
                            v0 = p.dts if v0 is None else v0
                            tv = _timing(vtb, vtb, v0, seg_off, end_s, skip_before)
                            if a_in is not None:
                                ta = _timing(a_in.time_base, vtb, v0, seg_off, end_s, skip_before)
                            result.sources.append({"segment_id": seg.id, "key": seg.key, "version_id": seg.version_id,
                                                   "sha256": seg.sha256})
                            batch, pending = pending + [p], []
                        else:
                            batch = (p,)
                        for q in batch:
                            dts = q.dts
                            if q.stream.index == v_index:
                                if (tv.skip is not None and dts < tv.skip) or dts >= tv.end:
                                    continue
                                raw = dts + tv.off
                                out_dts = last_v = max(raw, last_v + 1)
                                last_video = (dts, tv.exact, vtb)
                                q.stream = v_out
                                result.frames += 1
                            else:
                                if a_out is None or (ta.skip is not None and dts < ta.skip) or dts >= ta.end:
                                    continue
                                raw = dts + ta.off
                                out_dts = last_a = max(raw, last_a + 1)
                                q.stream = a_out
                            pts = raw + ((q.pts - dts) if q.pts is not None else 0)
                            q.dts, q.pts = out_dts, max(pts, out_dts)
                            container.mux_one(q)
            if progress:
                progress((i + 1) / len(segs))
    finally:
        container.close()
    if last_video is not None:
        dts, exact, vtb = last_video
        result.last_ms = origin_ms + math.floor((dts + exact) * vtb * 1000)
    result.bytes = sink.size
    result.sha256 = sink.sha.hexdigest()
    return result
