"""Stitching stored segments into one MP4 for a time window, by stream copy.

The output starts at the last keyframe at or before the window start (so it
decodes from its first frame) and ends with the last packet before the window
end; nothing is transcoded.  The output is a fragmented MP4 written to any
binary sink (an HTTP response stream or a file in an evidence package).

Fetching overlaps muxing (:class:`_Prefetch`): one thread reads the next
segments into memory, in order, while this one muxes the current segment, so
an export takes about as long as the slower of the two rather than their sum
(bench/export).  Memory stays bounded whatever the window: the segment being
muxed plus those fetched ahead, at most ``PREFETCH_BYTES`` (always one).  A
failed fetch raises its own error when the stitch reaches that segment, after
every earlier one was muxed -- the same error, at the same point of the output,
as fetching one at a time; a stitch that stops early (an error, a lost claim
raised by ``progress``, a client gone) stops and joins the fetch thread.  The
output is hashed and written by a thread of its own (:class:`_Sink`).  The bytes
are those of the sequential stitch (tests/test_stitch_prefetch.py compares them).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import math
import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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
    """Counts and hashes what the muxer writes, passing it on -- from a thread of its own, so
    the muxer neither waits for the disk (or the HTTP reader) nor spends its time hashing.

    At most ``depth`` buffers wait (each at most ``IO_BUFFER``).  A write that failed there (a
    full disk, a client gone) fails the muxer's next write with that error, as when the write
    was the muxer's own; :func:`stitch` raises it (``error``), never PyAV's cause-less
    ``PyAVCallbackError`` that follows it."""

    def __init__(self, out: BinaryIO, depth: int = 8) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None
        self._q: queue.Queue[bytes | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, name="stitch-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (b := self._q.get()) is not None:
            if self.error is not None:
                continue  # drained, so that the muxer never blocks on a dead writer
            try:
                self.out.write(b)
                self.sha.update(b)
                self.size += len(b)
            except BaseException as e:  # handed to the muxer's thread, which raises it
                self.error = e

    def write(self, b) -> int:
        self.check()
        self._q.put(b)  # PyAV hands each write its own bytes: safe to keep
        return len(b)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for every write (a write's error stays in ``error`` for the caller)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()


#: PyAV's I/O buffer for the output: one Python call (write, hash) per buffer; at PyAV's
#: default 32 KiB an hour of 1080p is ~60 000 of them (bench/export)
IO_BUFFER = 1 << 20
#: ... and for reading a segment (in memory): opening a fragmented MP4 reads one buffer at every
#: fragment, so a large one reads the whole segment twice; 64 KiB measured cheapest
READ_BUFFER = 64 << 10
#: segment bytes fetched ahead of the one being muxed (at least one segment whatever its size):
#: two 60 s 1080p segments (~33 MB each)
PREFETCH_BYTES = 80 << 20
#: opening a segment after the first: its tracks' parameters are in its moov, and only the
#: first segment's are the output's template (opened with FFmpeg's defaults, as always), so
#: the stream probe need not read and decode packets (half the CPU of reading a segment).
#: Even so FFmpeg decodes the first packet it reads to learn the pixel format: a whole 1080p
#: keyframe, 8 of the 9 ms an open took (bench/export); ``skip_frame`` (a decoder option,
#: which PyAV hands the probe's decoders) makes that decode a no-op.  The demuxed packets are
#: the same (tests/test_stitch_prefetch.py); only the unused pixel format stays unknown.
_NO_PROBE = {"probesize": "32", "analyzeduration": "0", "skip_frame": "all"}


class _Fetched:
    """A fetched segment as the seekable file the demuxer reads: the body's chunks as read,
    never joined.  One ``bytes`` of a whole segment (~33 MB) is a fresh mapping of memory
    every time, and its page faults cost as much CPU as receiving the bytes (bench/export:
    20 ms a segment in one read, 10 in 1 MiB chunks, which the allocator reuses)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._starts = list(itertools.accumulate((len(c) for c in chunks[:-1]), initial=0))
        self.size = sum(len(c) for c in chunks)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        pos, end = self._pos, self.size if n < 0 else min(self.size, self._pos + n)
        if pos >= end:
            return b""
        i = bisect.bisect_right(self._starts, pos) - 1
        parts = []
        while pos < end:
            c, c0 = self._chunks[i], self._starts[i]
            part = c[pos - c0:end - c0]  # a slice of a bytes is a copy, as BytesIO.read's was
            parts.append(part)
            pos += len(part)
            i += 1
        self._pos = end
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __enter__(self) -> _Fetched:
        return self

    def __exit__(self, *exc: object) -> None:
        self._chunks = []


#: bytes per read of a segment's body (see :class:`_Fetched`)
FETCH_CHUNK = 1 << 20


def _fetch(store: ObjectStore, seg: Segment, stop: threading.Event) -> _Fetched | None:
    """The stored version's bytes in memory (None if ``stop`` was set meanwhile).  A body cut
    short raises :class:`StorageUnavailableError` naming the object (the store's body)."""
    if stop.is_set():
        return None
    chunks = []
    with store.open(seg.key, seg.version_id) as body:
        while chunk := body.read(FETCH_CHUNK):
            chunks.append(chunk)
            if stop.is_set():
                return None
    return _Fetched(chunks)


class _Prefetch:
    """The segments' bytes in order, fetched by one thread ahead of the caller.

    ``next()`` returns segment i's bytes or raises the error its fetch raised;
    segments i+1.. are fetched meanwhile while their sizes (from the index) fit in
    ``budget`` bytes, at least one.  ``close()`` cancels the fetches not started and
    joins the thread: a fetch under way ends with its read (one segment, within the
    store's timeouts) and its bytes are dropped."""

    def __init__(self, store: ObjectStore, segs: Sequence[Segment], budget: int) -> None:
        self.store, self.segs, self.budget = store, segs, budget
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="stitch-fetch")
        self._ahead: deque[tuple[Segment, Future]] = deque()
        self._next = 0  # index of the next segment to submit

    def _fill(self) -> None:
        held = sum(s.size for s, _ in self._ahead)
        while self._next < len(self.segs) and (not self._ahead or held + self.segs[self._next].size <= self.budget):
            seg = self.segs[self._next]
            self._ahead.append((seg, self._pool.submit(_fetch, self.store, seg, self._stop)))
            held += seg.size
            self._next += 1

    def next(self) -> _Fetched:
        self._fill()
        _, fut = self._ahead.popleft()
        self._fill()  # the one taken no longer counts: fetch further while this one is muxed
        return fut.result()

    def close(self) -> None:
        self._stop.set()
        for _, fut in self._ahead:
            fut.cancel()
        self._ahead.clear()
        self._pool.shutdown(wait=True)


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
    try:
        # (the recorder's options: an audio track keeps its start time rather than being stretched to 0)
        container = av.open(sink, "w", format="mp4", options=dict(MP4_OPTIONS), buffer_size=IO_BUFFER)
    except BaseException:
        sink.close()
        raise
    v_out = a_out = None
    origin_ms: int | None = None
    last_v = last_a = -1
    last_video: tuple[int, Fraction, Fraction] | None = None  # (dts, exact offset, time base) of the last frame kept
    fetch = _Prefetch(store, segs, PREFETCH_BYTES)
    error: BaseException | None = None
    try:
        for i, seg in enumerate(segs):
            with fetch.next() as f:
                v0 = skip_before = None
                if origin_ms is None:  # first segment: find the keyframe at or before the window start
                    with av.open(f, buffer_size=READ_BUFFER, options=_NO_PROBE) as src:  # packets only
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
                with av.open(f, buffer_size=READ_BUFFER, options=None if v_out is None else _NO_PROBE) as src:
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
    except BaseException as e:  # raised below, once the threads are stopped and the output closed
        error = e
    fetch.close()
    try:
        container.close()
    except BaseException as e:
        error = error or e  # closing after an error fails too: the error under way is the one to raise
    sink.close()
    if sink.error is not None and (error is None or isinstance(error, av.error.PyAVCallbackError)):
        # The write that failed (a full disk, a client gone), not PyAV's report of it: once a write
        # failed, PyAV raises the write's error once and then "Error in PyAV callback" with no cause
        # for every later call (the trailer's, at close), which would replace it.
        error = sink.error
    if error is not None:
        raise error
    if last_video is not None:
        dts, exact, vtb = last_video
        result.last_ms = origin_ms + math.floor((dts + exact) * vtb * 1000)
    result.bytes = sink.size
    result.sha256 = sink.sha.hexdigest()
    return result


class _QueueSink:
    """A file-like the muxer writes to in one thread while the HTTP response reads
    in another; the bounded queue is the back-pressure that keeps memory flat."""

    def __init__(self, maxsize: int = 4) -> None:  # writes of up to IO_BUFFER (1 MiB)
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
