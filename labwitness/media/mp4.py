"""ISO BMFF (MP4) boxes of the fragmented MP4 segments the recorder writes.

One box walker (:func:`walk`, or :func:`boxes` over bytes in memory) and what is read
with it: the video track of the init segment (:func:`parse_init`), the fragment list
of ``mfra`` (:func:`parse_mfra_tail`), the first sample of a fragment
(:func:`parse_moof`) and the end of the last complete fragment
(:func:`complete_fragments_end`).  The recorder salvages a segment cut short by a
crash with the last; retention finds keyframes in stored segments with the others
(:mod:`retention.keyframe_locate`).

Pure: bytes in memory, or a ``read(offset, length)`` function for a file or an
object of which only a few box headers are wanted.  The segments are
``frag_keyframe+empty_moov+default_base_moof`` (see ``recorder.segmenter``); field
layouts are those of ISO/IEC 14496-12.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

#: ``read(offset, length)`` -> up to ``length`` bytes from ``offset`` (fewer only at the end)
Read = Callable[[int, int], bytes]

_CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc"}
_CONFIG_BOX = {"h264": b"avcC", "hevc": b"hvcC"}
_NON_SYNC = 0x00010000  # sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1)
_HEADER = struct.Struct(">I4s")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class ParseError(ValueError):
    """The bytes are not the fragmented MP4 (or the sample in it) this package understands."""


class NeedMore(Exception):
    """The buffer ends inside the box being parsed: read ``upto`` bytes from its start and parse again."""

    def __init__(self, upto: int) -> None:
        super().__init__(upto)
        self.upto = upto


class Box(NamedTuple):
    type: bytes
    start: int  # where the box (its size field) starts
    payload: int  # where its payload starts, after the 8- or 16-byte header
    end: int  # where the next box starts; may lie beyond what was read or the file (a box cut short)


def walk(read: Read, start: int, end: int) -> Iterator[Box]:
    """The boxes laid end to end from ``start`` to ``end``, reading only their headers
    (one read of at most 16 bytes a box, so a walk over a remote object costs one
    ranged read per box).

    Stops before a header cut off at ``end``; a box's :attr:`Box.end` may still lie
    beyond ``end`` (its body cut short): the caller decides.  Raises
    :class:`ParseError` for a size smaller than the header itself."""
    pos = start
    while pos + 8 <= end:
        hdr = read(pos, 16)
        size, typ = _HEADER.unpack_from(hdr)
        head = 8
        if size == 1:  # 64-bit "largesize" after the type
            if pos + 16 > end:
                return
            size = _U64.unpack_from(hdr, 8)[0]
            head = 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - pos
        if size < head:
            raise ParseError(f"bad box size {size} at {pos}")
        yield Box(typ, pos, pos + head, pos + size)
        pos += size


def boxes(buf: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes in ``buf[start:end]`` (see :func:`walk`)."""
    return walk(lambda offset, length: buf[offset: offset + length], start, len(buf) if end is None else end)


def child(buf, start: int, end: int, typ: bytes) -> tuple[int, int] | None:
    """(payload start, end) of the first ``typ`` box in ``buf[start:end]``, or None."""
    for box in boxes(buf, start, end):
        if box.type == typ:
            if box.end > end:
                raise ParseError(f"{typ!r} overruns its parent")
            return box.payload, box.end
    return None


def complete_fragments_end(read: Read, size: int) -> int:
    """Byte offset just after the last complete ``moof``+``mdat`` pair that follows a
    ``moov``, or 0: where a segment cut short by a crash is truncated to stay playable.

    Neither PyAV nor FFmpeg exposes "truncate a fragmented MP4 to its last complete
    fragment"; this reads only the box headers of a file of ``size`` bytes."""
    good = 0
    have_moov = False
    pending_moof = False
    try:
        for box in walk(read, 0, size):
            if box.end > size:
                break  # truncated box: stop before it
            if box.type == b"moov":
                have_moov = True
            elif box.type == b"moof":
                pending_moof = True
            elif box.type == b"mdat" and pending_moof and have_moov:
                good = box.end
                pending_moof = False
    except ParseError:
        # A size smaller than its own header: what follows is not boxes.  Like a box
        # cut short, everything from there on is lost and what came before is kept.
        return good
    return good


# -- init segment -------------------------------------------------------------------
@dataclass(frozen=True)
class TrackConfig:
    """What is needed to find and decode the video track's samples."""

    codec: str  # h264 | hevc
    extradata: bytes  # avcC / hvcC payload
    width: int
    height: int
    track_id: int
    timescale: int
    default_duration: int = 0
    default_size: int = 0
    default_flags: int = 0


def _parse_trak(buf, p: int, e: int) -> TrackConfig | None:
    mdia = child(buf, p, e, b"mdia")
    if mdia is None:
        return None
    hdlr = child(buf, *mdia, b"hdlr")
    if hdlr is None or bytes(buf[hdlr[0] + 8: hdlr[0] + 12]) != b"vide":
        return None
    tkhd = child(buf, p, e, b"tkhd")
    mdhd = child(buf, *mdia, b"mdhd")
    if tkhd is None or mdhd is None:
        raise ParseError("video trak without tkhd/mdhd")
    tv = buf[tkhd[0]]
    track_id = _U32.unpack_from(buf, tkhd[0] + (20 if tv == 1 else 12))[0]
    mv = buf[mdhd[0]]
    timescale = _U32.unpack_from(buf, mdhd[0] + (20 if mv == 1 else 12))[0]
    stbl = None
    minf = child(buf, *mdia, b"minf")
    if minf is not None:
        stbl = child(buf, *minf, b"stbl")
    stsd = child(buf, *stbl, b"stsd") if stbl else None
    if stsd is None:
        raise ParseError("video trak without stsd")
    # stsd: full box header (4) + entry count (4), then sample entries
    for typ, _, ep, ee in boxes(buf, stsd[0] + 8, stsd[1]):
        codec = _CODECS.get(typ)
        if codec is None:
            raise ParseError(f"unsupported video sample entry {typ!r}")
        width, height = struct.unpack_from(">HH", buf, ep + 24)
        # VisualSampleEntry: 6 reserved + 2 dref idx + 16 predefined + w,h + ... = 78 bytes
        cfg = child(buf, ep + 78, ee, _CONFIG_BOX[codec])
        if cfg is None:
            raise ParseError(f"{typ!r} without {_CONFIG_BOX[codec]!r}")
        return TrackConfig(codec, bytes(buf[cfg[0]: cfg[1]]), width, height, track_id, timescale)
    raise ParseError("empty stsd")


def parse_init(buf: bytes) -> tuple[TrackConfig, int]:
    """The video track of an init segment (``ftyp``+``moov``) and the offset after ``moov``.

    Raises :class:`ParseError`, or :class:`NeedMore` if the buffer ends inside ``moov``."""
    for typ, _, p, e in boxes(buf):
        if typ == b"moov":
            if e > len(buf):
                raise NeedMore(e)
            cfg = None
            for t, _, tp, te in boxes(buf, p, e):
                if t == b"trak" and cfg is None:
                    cfg = _parse_trak(buf, tp, te)
            if cfg is None:
                raise ParseError("no video track")
            mvex = child(buf, p, e, b"mvex")
            if mvex is not None:
                for t, _, tp, te in boxes(buf, *mvex):
                    if t == b"trex":
                        tid, _sdi, dur, size, flags = struct.unpack_from(">IIIII", buf, tp + 4)
                        if tid == cfg.track_id:
                            cfg = TrackConfig(cfg.codec, cfg.extradata, cfg.width, cfg.height, cfg.track_id,
                                              cfg.timescale, dur, size, flags)
            return cfg, e
        if typ in (b"moof", b"mdat"):
            break
    raise ParseError("no moov before the first fragment")


# -- fragments ----------------------------------------------------------------------
def parse_mfra_tail(tail: bytes, tail_offset: int, track_id: int) -> list[tuple[int, int]] | None:
    """(time, moof offset) of every fragment of ``track_id`` from ``mfra`` at the end of
    the file (``tail`` is the file's last bytes, starting at ``tail_offset``).  None when
    there is no ``mfra``; :class:`NeedMore` when ``tail`` does not hold all of it."""
    if len(tail) < 16 or tail[-16 + 4: -16 + 8] != b"mfro":
        return None
    mfra_size = _U32.unpack_from(tail, len(tail) - 4)[0]
    start = len(tail) - mfra_size
    if start < 0:
        raise NeedMore(mfra_size)
    if tail[start + 4: start + 8] != b"mfra":
        return None
    for typ, _, p, e in boxes(tail, start + 8, len(tail)):
        if typ != b"tfra":
            continue
        version = tail[p]
        tid, lengths, n = struct.unpack_from(">III", tail, p + 4)
        if tid != track_id:
            continue
        sizes = (((lengths >> 4) & 3) + 1, ((lengths >> 2) & 3) + 1, (lengths & 3) + 1)
        pos, out = p + 16, []
        for _ in range(n):
            if version == 1:
                t, off = struct.unpack_from(">QQ", tail, pos)
                pos += 16
            else:
                t, off = struct.unpack_from(">II", tail, pos)
                pos += 8
            pos += sum(sizes)
            out.append((t, off))
        if pos > e:
            raise ParseError("tfra overruns its box")
        return out
    return None


@dataclass(frozen=True)
class FragmentHead:
    """The first video sample of one fragment."""

    moof_offset: int
    time: int  # presentation time of the first sample, track timescale
    sample_offset: int
    sample_size: int
    sync: bool
    next_offset: int  # where the next top-level box starts (moof + its mdat), if known; else 0


class _Fields:
    """The optional 32-bit fields of a full box, read in order: each flag bit that is set
    means its field is present, and shifts every field after it."""

    __slots__ = ("buf", "pos", "flags")

    def __init__(self, buf, pos: int, flags: int) -> None:
        self.buf, self.pos, self.flags = buf, pos, flags

    def take(self, bit: int, default: int | None = 0, fmt: str = ">I") -> int | None:
        """The field of flag ``bit`` if present, else ``default``."""
        if not self.flags & bit:
            return default
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value


def parse_moof(buf: bytes, moof_offset: int, cfg: TrackConfig) -> FragmentHead:
    """``buf`` starts at a ``moof`` box (at file offset ``moof_offset``) and holds all of it."""
    if len(buf) < 8 or buf[4:8] != b"moof":
        raise ParseError(f"no moof at {moof_offset}")
    size = _U32.unpack_from(buf, 0)[0]
    if size > len(buf):
        raise NeedMore(size)
    first_traf = True
    for typ, _, p, e in boxes(buf, 8, size):
        if typ != b"traf":
            continue
        tfhd = child(buf, p, e, b"tfhd")
        if tfhd is None:
            raise ParseError("traf without tfhd")
        tp = tfhd[0]
        tf_flags = int.from_bytes(buf[tp + 1: tp + 4], "big")
        tid = _U32.unpack_from(buf, tp + 4)[0]
        if tid != cfg.track_id:
            first_traf = False
            continue
        tf = _Fields(buf, tp + 8, tf_flags)
        base = tf.take(0x01, None, ">Q")
        tf.take(0x02)  # sample description index
        tf.take(0x08)  # default sample duration: not needed, but present it shifts the fields after it
        d_size = tf.take(0x10, cfg.default_size)
        d_flags = tf.take(0x20, cfg.default_flags)
        if base is None:
            # default-base-is-moof, or (absent both) the first traf's base is the moof too
            if tf_flags & 0x020000 or first_traf:
                base = moof_offset
            else:
                raise ParseError("traf data base is the end of the previous traf's data: not supported")
        tfdt = child(buf, p, e, b"tfdt")
        decode_time = 0
        if tfdt is not None:
            decode_time = (_U64.unpack_from(buf, tfdt[0] + 4)[0] if buf[tfdt[0]] == 1
                           else _U32.unpack_from(buf, tfdt[0] + 4)[0])
        trun = child(buf, p, e, b"trun")
        if trun is None:
            raise ParseError("traf without trun")
        rp = trun[0]
        version = buf[rp]
        count = _U32.unpack_from(buf, rp + 4)[0]
        if count == 0:
            raise ParseError("empty trun")
        run = _Fields(buf, rp + 8, int.from_bytes(buf[rp + 1: rp + 4], "big"))
        data_offset = run.take(0x001, 0, ">i")
        first_flags = run.take(0x004, None)
        # the first sample's own fields
        run.take(0x100)  # duration
        s_size = run.take(0x200, d_size)
        s_flags = run.take(0x400, d_flags)
        cts = run.take(0x800, 0, ">i" if version == 1 else ">I")
        if first_flags is not None:
            s_flags = first_flags
        if s_size <= 0:
            raise ParseError("first sample has no size")
        next_offset = 0
        after = moof_offset + size
        if len(buf) >= size + 8 and buf[size + 4: size + 8] == b"mdat":
            next_offset = after + _U32.unpack_from(buf, size)[0]
        return FragmentHead(moof_offset, decode_time + cts, base + data_offset, s_size,
                            not (s_flags & _NON_SYNC), next_offset)
    raise ParseError("fragment without the video track")
