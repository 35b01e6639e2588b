"""Stitching stored segments into one MP4 for a time window, by stream copy.

The output starts at the last keyframe at or before the window start (so it
decodes from its first frame) and ends with the last packet before the window
end; nothing is transcoded.  Segments are fetched one at a time into a
temporary file, so memory stays bounded by the muxer, whatever the window.
The output is a fragmented MP4 written to any binary sink (an HTTP response
stream or a file in an evidence package).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Callable, Sequence

import av

from index.models import Segment
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
    body = store.open(seg.key, seg.version_id)
    try:
        shutil.copyfileobj(body, tmp, 1 << 20)
    finally:
        body.close()
        getattr(body, "release_conn", lambda: None)()
    tmp.seek(0)
    return tmp


def stitch(store: ObjectStore, segments: Sequence[Segment], start_ms: int, end_ms: int, out: BinaryIO,
           progress: Callable[[float], None] | None = None) -> StitchResult:
    segs = sorted((s for s in segments if s.end_ms > start_ms and s.start_ms < end_ms), key=lambda s: s.start_ms)
    result = StitchResult(sources=[])
    if not segs:
        return result
    sink = _Sink(out)
    container = av.open(sink, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
    v_out = a_out = None
    origin_ms: int | None = None
    last_v = last_a = -1
    try:
        for i, seg in enumerate(segs):
            with _fetch(store, seg) as f:
                with av.open(f) as src:  # pass 1: first video dts and, for the first segment, the start keyframe
                    v_in = src.streams.video[0]
                    v0 = skip_before = None
                    want = Fraction(max(0, start_ms - seg.start_ms), 1000)
                    for p in src.demux(v_in):
                        if not p.size or p.dts is None:
                            continue
                        if v0 is None:
                            v0 = p.dts
                        if origin_ms is not None or (p.dts - v0) * v_in.time_base > want:
                            break
                        if p.is_keyframe:
                            skip_before = p.dts
                if v0 is None:
                    continue  # no video in this segment
                if origin_ms is None:
                    skip_before = v0 if skip_before is None else skip_before
                    origin_ms = seg.start_ms + int((skip_before - v0) * v_in.time_base * 1000)
                    result.first_ms = origin_ms
                else:
                    skip_before = None
                f.seek(0)
                with av.open(f) as src:  # pass 2: stream copy, packet by packet
                    v_in = src.streams.video[0]
                    a_in = src.streams.audio[0] if src.streams.audio else None
                    if v_out is None:
                        v_out = container.add_stream_from_template(v_in)
                        if a_in is not None:
                            a_out = container.add_stream_from_template(a_in)
                    result.sources.append({"segment_id": seg.id, "key": seg.key, "version_id": seg.version_id,
                                           "sha256": seg.sha256})
                    seg_off = Fraction(seg.start_ms - origin_ms, 1000)
                    skip_s = (skip_before - v0) * v_in.time_base if skip_before is not None else None
                    for p in src.demux([s for s in (v_in, a_in) if s is not None]):
                        if not p.size or p.dts is None:
                            continue
                        is_v = p.stream.type == "video"
                        tb = p.stream.time_base
                        rel = (p.dts - v0) * v_in.time_base if is_v else p.dts * tb - v0 * v_in.time_base
                        if skip_s is not None and rel < skip_s:
                            continue
                        t = seg_off + rel  # seconds from the output origin
                        if origin_ms + t * 1000 >= end_ms:
                            continue
                        dts = int(t / tb)
                        pts = dts + ((p.pts - p.dts) if p.pts is not None else 0)
                        if is_v:
                            dts = max(dts, last_v + 1)
                            last_v = dts
                            p.stream = v_out
                            result.frames += 1
                            result.last_ms = int(origin_ms + t * 1000)
                        else:
                            if a_out is None:
                                continue
                            dts = max(dts, last_a + 1)
                            last_a = dts
                            p.stream = a_out
                        p.dts, p.pts = dts, max(pts, dts)
                        container.mux_one(p)
            if progress:
                progress((i + 1) / len(segs))
    finally:
        container.close()
    result.bytes = sink.size
    result.sha256 = sink.sha.hexdigest()
    return result


class _QueueSink:
    """A file-like the muxer writes to in one thread while the HTTP response reads
    in another; the bounded queue is the back-pressure that keeps memory flat."""

    def __init__(self, maxsize: int = 64) -> None:
        import queue

        self.q: "queue.Queue[bytes | None | BaseException]" = queue.Queue(maxsize)
        self.closed = False

    def write(self, b) -> int:
        if self.closed:
            raise BrokenPipeError("client went away")
        self.q.put(bytes(b))
        return len(b)

    def flush(self) -> None:
        pass


def stream_stitched(store: ObjectStore, segments: Sequence[Segment], start_ms: int, end_ms: int, on_done=None):
    """An iterator of MP4 bytes, stitched in a background thread."""
    import threading

    sink = _QueueSink()

    def work() -> None:
        try:
            res = stitch(store, segments, start_ms, end_ms, sink)
            if on_done:
                on_done(res)
            sink.q.put(None)
        except BaseException as e:  # handed to the reader, which re-raises it
            sink.q.put(e)

    threading.Thread(target=work, name="stitch", daemon=True).start()
    try:
        while True:
            item = sink.q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        sink.closed = True
        while not sink.q.empty():  # unblock the writer so the thread ends
            sink.q.get_nowait()
