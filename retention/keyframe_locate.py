"""Where a segment's keyframes are: the sync samples due every N seconds, found by reading box headers only.

:func:`locate_keyframes` reads the init segment, the fragment list (``mfra``, or a
walk of the top-level boxes when a segment cut short by recovery has none), then
the ``moof`` of each candidate fragment until one starts with a sync sample, and
that sample's bytes -- usually in the same ranged read as its ``moof``.  The boxes
are parsed by :mod:`labwitness.media.mp4`; the bytes come from a
:class:`retention.byte_sources.ByteSource`.  How and why: :mod:`retention.keyframes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labwitness.media.mp4 import NeedMore, ParseError, TrackConfig, parse_init, parse_mfra_tail, parse_moof, walk
from retention.byte_sources import ByteSource

#: bytes read at the head (init segment), at the tail (mfra) and at a moof
HEAD_READ = 64 * 1024
TAIL_READ = 16 * 1024
MOOF_READ = 16 * 1024


@dataclass(frozen=True)
class KeySample:
    """One sync sample to decode: its presentation time and where its bytes are."""

    media_s: float
    offset: int
    size: int
    data: bytes = field(default=b"", repr=False)  # the sample itself (one access unit, length-prefixed NALs)
    #: the smallest fragment (bytes) between the previous sample and this one: with 1 s
    #: fragments, the coded change of the quietest second (None: no fragment in between)
    activity: int | None = None


@dataclass
class _Reader:
    """Remembers the last buffer read, so a sample that was read along with its
    ``moof`` costs no second request."""

    src: ByteSource
    buf: bytes = b""
    at: int = 0
    hint: int = MOOF_READ

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.src.size - offset)
        if self.at <= offset and offset + length <= self.at + len(self.buf):
            return self.buf[offset - self.at: offset - self.at + length]
        self.buf, self.at = self.src.read(offset, length), offset
        return self.buf

    def read_sample(self, offset: int, size: int) -> bytes:
        if self.at <= offset < self.at + len(self.buf):
            have = self.buf[offset - self.at: offset - self.at + size]
            if len(have) == size:
                return have
            return have + self.src.read(offset + len(have), size - len(have))
        return self.src.read(offset, size)


def read_init(r: _Reader) -> tuple[TrackConfig, int]:
    head = r.read(0, HEAD_READ)
    try:
        return parse_init(head)
    except NeedMore as m:
        return parse_init(r.read(0, m.upto))


def fragment_offsets(r: _Reader, cfg: TrackConfig, first_moof: int) -> list[tuple[int | None, int]]:
    """(time or None, moof offset) of every fragment: from ``mfra`` if there is one,
    else by walking the top-level boxes (each walk step is one read)."""
    size = r.src.size
    tail_at = max(0, size - TAIL_READ)
    tail = r.src.read(tail_at, size - tail_at)
    try:
        frags = parse_mfra_tail(tail, tail_at, cfg.track_id)
    except NeedMore as m:
        tail_at = max(0, size - m.upto)
        frags = parse_mfra_tail(r.src.read(tail_at, size - tail_at), tail_at, cfg.track_id)
    if frags:
        if any(not (first_moof <= off < size) for _, off in frags):
            raise ParseError("mfra points outside the file")
        return [(t, off) for t, off in frags]
    return [(None, box.start) for box in walk(r.src.read, first_moof, size) if box.type == b"moof"]


def locate_keyframes(src: ByteSource, every_s: float, first_at_s: float = 0.0, *,
                     read_hint: int = MOOF_READ) -> tuple[TrackConfig, list[KeySample], _Reader]:
    """The sync samples to decode, with their bytes: the first at or after ``first_at_s`` (media seconds
    from the start of the segment), then the first at or after each previous one
    plus ``every_s``.

    Each candidate fragment is read from its ``moof`` on, ``read_hint`` bytes (grown
    to 1.25 x the last keyframe's extent), so that usually the keyframe comes in the
    same ranged read as its ``moof``; the returned reader still holds that buffer."""
    if every_s <= 0:
        raise ValueError("every_s must be > 0")
    r = _Reader(src)
    cfg, first_moof = read_init(r)
    frags = fragment_offsets(r, cfg, first_moof)
    ts = cfg.timescale
    due = first_at_s
    picked: list[KeySample] = []
    want = max(MOOF_READ, read_hint)
    after = 0  # index of the first fragment after the last sample (activity window)
    for i, (t, off) in enumerate(frags):
        if t is not None and t / ts + 1e-6 < due:
            continue  # mfra says it starts before the due time: no need to read it
        extent = (frags[i + 1][1] if i + 1 < len(frags) else src.size) - off
        buf = r.read(off, min(want, extent) if extent > 0 else MOOF_READ)
        try:
            head = parse_moof(buf, off, cfg)
        except NeedMore as m:
            head = parse_moof(r.read(off, m.upto), off, cfg)
        media_s = head.time / ts
        if media_s + 1e-6 < due or not head.sync:
            continue
        if head.sample_offset + head.sample_size > src.size:
            raise ParseError("sample beyond the end of the file")
        between = [frags[j + 1][1] - frags[j][1] for j in range(after, i)]
        picked.append(KeySample(media_s, head.sample_offset, head.sample_size,
                                r.read_sample(head.sample_offset, head.sample_size),
                                min(between) if between else None))
        after = i + 1
        want = max(MOOF_READ, int((head.sample_offset + head.sample_size - off) * 1.25))
        due = media_s + every_s
    r.hint = want
    return cfg, picked, r
