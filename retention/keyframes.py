"""One keyframe every N seconds of a fragmented-MP4 segment, reading only those bytes.

A pipeline stage with one job: ``sample_keyframes(source, every_s)`` ->
decoded keyframes (:class:`Keyframe`), never the whole stream.

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
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Protocol

import av
import numpy as np

log = logging.getLogger(__name__)

#: bytes read at the head (init segment), at the tail (mfra) and at a moof
HEAD_READ = 64 * 1024
TAIL_READ = 16 * 1024
MOOF_READ = 16 * 1024

_CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc"}
_CONFIG_BOX = {"h264": b"avcC", "hevc": b"hvcC"}
_NON_SYNC = 0x00010000  # sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1)


class ParseError(ValueError):
    """The bytes are not the fragmented MP4 this module understands."""


# -- byte sources -----------------------------------------------------------------
class ByteSource(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end)."""


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        return self.data[offset: offset + length]


class FileSource:
    def __init__(self, path) -> None:
        self.path = path
        self._f = open(path, "rb")
        self.size = self._f.seek(0, io.SEEK_END)
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        self._f.seek(offset)
        return self._f.read(length)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "FileSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoreSource:
    """One object version in an object store, read by byte ranges (``store.open``)."""

    def __init__(self, store, key: str, version_id: str | None, size: int) -> None:
        self.store, self.key, self.version_id, self.size = store, key, version_id, size
        self.reads = 0
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        self.reads += 1
        body: BinaryIO = self.store.open(self.key, self.version_id, offset, length)
        try:
            data = body.read()
        finally:
            body.close()
            release = getattr(body, "release_conn", None)  # urllib3 responses go back to the pool
            if release is not None:
                release()
        self.bytes_read += len(data)
        return data


# -- box parsing ------------------------------------------------------------------
def _boxes(buf: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, box start, payload start, box end) of the boxes in buf[start:end]."""
    end = len(buf) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack_from(">I4s", buf, pos)
        hdr = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", buf, pos + 8)[0]
            hdr = 16
        elif size == 0:
            size = end - pos
        if size < hdr:
            raise ParseError(f"bad box size {size} at {pos}")
        yield typ, pos, pos + hdr, pos + size
        pos += size


def _child(buf, start: int, end: int, typ: bytes) -> tuple[int, int] | None:
    for t, _, p, e in _boxes(buf, start, end):
        if t == typ:
            if e > end:
                raise ParseError(f"{typ!r} overruns its parent")
            return p, e
    return None


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
    mdia = _child(buf, p, e, b"mdia")
    if mdia is None:
        return None
    hdlr = _child(buf, *mdia, b"hdlr")
    if hdlr is None or bytes(buf[hdlr[0] + 8: hdlr[0] + 12]) != b"vide":
        return None
    tkhd = _child(buf, p, e, b"tkhd")
    mdhd = _child(buf, *mdia, b"mdhd")
    if tkhd is None or mdhd is None:
        raise ParseError("video trak without tkhd/mdhd")
    tv = buf[tkhd[0]]
    track_id = struct.unpack_from(">I", buf, tkhd[0] + (20 if tv == 1 else 12))[0]
    mv = buf[mdhd[0]]
    timescale = struct.unpack_from(">I", buf, mdhd[0] + (20 if mv == 1 else 12))[0]
    stbl = None
    minf = _child(buf, *mdia, b"minf")
    if minf is not None:
        stbl = _child(buf, *minf, b"stbl")
    stsd = _child(buf, *stbl, b"stsd") if stbl else None
    if stsd is None:
        raise ParseError("video trak without stsd")
    # stsd: full box header (4) + entry count (4), then sample entries
    for typ, _, ep, ee in _boxes(buf, stsd[0] + 8, stsd[1]):
        codec = _CODECS.get(typ)
        if codec is None:
            raise ParseError(f"unsupported video sample entry {typ!r}")
        width, height = struct.unpack_from(">HH", buf, ep + 24)
        # VisualSampleEntry: 6 reserved + 2 dref idx + 16 predefined + w,h + ... = 78 bytes
        cfg = _child(buf, ep + 78, ee, _CONFIG_BOX[codec])
        if cfg is None:
            raise ParseError(f"{typ!r} without {_CONFIG_BOX[codec]!r}")
        return TrackConfig(codec, bytes(buf[cfg[0]: cfg[1]]), width, height, track_id, timescale)
    raise ParseError("empty stsd")


def parse_init(buf: bytes) -> tuple[TrackConfig, int]:
    """The video track of an init segment (``ftyp``+``moov``) and the offset after ``moov``.

    Raises :class:`ParseError`, or :class:`_NeedMore` if the buffer ends inside ``moov``."""
    for typ, _, p, e in _boxes(buf):
        if typ == b"moov":
            if e > len(buf):
                raise _NeedMore(e)
            cfg = None
            for t, _, tp, te in _boxes(buf, p, e):
                if t == b"trak" and cfg is None:
                    cfg = _parse_trak(buf, tp, te)
            if cfg is None:
                raise ParseError("no video track")
            mvex = _child(buf, p, e, b"mvex")
            if mvex is not None:
                for t, _, tp, te in _boxes(buf, *mvex):
                    if t == b"trex":
                        tid, _sdi, dur, size, flags = struct.unpack_from(">IIIII", buf, tp + 4)
                        if tid == cfg.track_id:
                            cfg = TrackConfig(cfg.codec, cfg.extradata, cfg.width, cfg.height, cfg.track_id,
                                              cfg.timescale, dur, size, flags)
            return cfg, e
        if typ in (b"moof", b"mdat"):
            break
    raise ParseError("no moov before the first fragment")


class _NeedMore(Exception):
    def __init__(self, upto: int) -> None:
        super().__init__(upto)
        self.upto = upto


def parse_mfra_tail(tail: bytes, tail_offset: int, track_id: int) -> list[tuple[int, int]] | None:
    """(time, moof offset) of every fragment of ``track_id`` from ``mfra`` at the end of
    the file (``tail`` is the file's last bytes, starting at ``tail_offset``).  None when
    there is no ``mfra``; :class:`_NeedMore` when ``tail`` does not hold all of it."""
    if len(tail) < 16 or tail[-16 + 4: -16 + 8] != b"mfro":
        return None
    mfra_size = struct.unpack_from(">I", tail, len(tail) - 4)[0]
    start = len(tail) - mfra_size
    if start < 0:
        raise _NeedMore(mfra_size)
    if tail[start + 4: start + 8] != b"mfra":
        return None
    for typ, _, p, e in _boxes(tail, start + 8, len(tail)):
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


def parse_moof(buf: bytes, moof_offset: int, cfg: TrackConfig) -> FragmentHead:
    """``buf`` starts at a ``moof`` box (at file offset ``moof_offset``) and holds all of it."""
    if len(buf) < 8 or buf[4:8] != b"moof":
        raise ParseError(f"no moof at {moof_offset}")
    size = struct.unpack_from(">I", buf, 0)[0]
    if size > len(buf):
        raise _NeedMore(size)
    first_traf = True
    for typ, _, p, e in _boxes(buf, 8, size):
        if typ != b"traf":
            continue
        tfhd = _child(buf, p, e, b"tfhd")
        if tfhd is None:
            raise ParseError("traf without tfhd")
        tp = tfhd[0]
        tf_flags = int.from_bytes(buf[tp + 1: tp + 4], "big")
        tid = struct.unpack_from(">I", buf, tp + 4)[0]
        if tid != cfg.track_id:
            first_traf = False
            continue
        q = tp + 8
        base = None
        if tf_flags & 0x01:
            base = struct.unpack_from(">Q", buf, q)[0]
            q += 8
        if tf_flags & 0x02:
            q += 4
        d_size, d_flags = cfg.default_size, cfg.default_flags
        if tf_flags & 0x08:  # default sample duration: not needed, but present it shifts the fields after it
            q += 4
        if tf_flags & 0x10:
            d_size = struct.unpack_from(">I", buf, q)[0]
            q += 4
        if tf_flags & 0x20:
            d_flags = struct.unpack_from(">I", buf, q)[0]
            q += 4
        if base is None:
            # default-base-is-moof, or (absent both) the first traf's base is the moof too
            if tf_flags & 0x020000 or first_traf:
                base = moof_offset
            else:
                raise ParseError("traf data base is the end of the previous traf's data: not supported")
        tfdt = _child(buf, p, e, b"tfdt")
        decode_time = 0
        if tfdt is not None:
            decode_time = (struct.unpack_from(">Q", buf, tfdt[0] + 4)[0] if buf[tfdt[0]] == 1
                           else struct.unpack_from(">I", buf, tfdt[0] + 4)[0])
        trun = _child(buf, p, e, b"trun")
        if trun is None:
            raise ParseError("traf without trun")
        rp = trun[0]
        version = buf[rp]
        r_flags = int.from_bytes(buf[rp + 1: rp + 4], "big")
        count = struct.unpack_from(">I", buf, rp + 4)[0]
        if count == 0:
            raise ParseError("empty trun")
        q = rp + 8
        data_offset = 0
        if r_flags & 0x001:
            data_offset = struct.unpack_from(">i", buf, q)[0]
            q += 4
        first_flags = None
        if r_flags & 0x004:
            first_flags = struct.unpack_from(">I", buf, q)[0]
            q += 4
        s_size, s_flags, cts = d_size, d_flags, 0
        if r_flags & 0x100:
            q += 4
        if r_flags & 0x200:
            s_size = struct.unpack_from(">I", buf, q)[0]
            q += 4
        if r_flags & 0x400:
            s_flags = struct.unpack_from(">I", buf, q)[0]
            q += 4
        if r_flags & 0x800:
            cts = struct.unpack_from(">i" if version == 1 else ">I", buf, q)[0]
            q += 4
        if first_flags is not None:
            s_flags = first_flags
        if s_size <= 0:
            raise ParseError("first sample has no size")
        next_offset = 0
        after = moof_offset + size
        if len(buf) >= size + 8 and buf[size + 4: size + 8] == b"mdat":
            next_offset = after + struct.unpack_from(">I", buf, size)[0]
        return FragmentHead(moof_offset, decode_time + cts, base + data_offset, s_size,
                            not (s_flags & _NON_SYNC), next_offset)
    raise ParseError("fragment without the video track")


# -- locating ---------------------------------------------------------------------
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
    except _NeedMore as m:
        return parse_init(r.read(0, m.upto))


def fragment_offsets(r: _Reader, cfg: TrackConfig, first_moof: int) -> list[tuple[int | None, int]]:
    """(time or None, moof offset) of every fragment: from ``mfra`` if there is one,
    else by walking the top-level boxes (each walk step is one read)."""
    size = r.src.size
    tail_at = max(0, size - TAIL_READ)
    tail = r.src.read(tail_at, size - tail_at)
    try:
        frags = parse_mfra_tail(tail, tail_at, cfg.track_id)
    except _NeedMore as m:
        tail_at = max(0, size - m.upto)
        frags = parse_mfra_tail(r.src.read(tail_at, size - tail_at), tail_at, cfg.track_id)
    if frags:
        if any(not (first_moof <= off < size) for _, off in frags):
            raise ParseError("mfra points outside the file")
        return [(t, off) for t, off in frags]
    out: list[tuple[int | None, int]] = []
    pos = first_moof
    while pos + 8 <= size:
        hdr = r.src.read(pos, 16)
        box, typ = struct.unpack_from(">I4s", hdr, 0)
        if box == 1:
            box = struct.unpack_from(">Q", hdr, 8)[0]
        elif box == 0:
            box = size - pos
        if box < 8:
            raise ParseError(f"bad box size at {pos}")
        if typ == b"moof":
            out.append((None, pos))
        pos += box
    return out


def locate_keyframes(src: ByteSource, every_s: float, first_at_s: float = 0.0, *,
                     read_hint: int = MOOF_READ) -> tuple[TrackConfig, list[KeySample], "_Reader"]:
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
        except _NeedMore as m:
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


# -- decoding ---------------------------------------------------------------------
class KeyframeDecoder:
    """Decodes single intra access units; one codec context per configuration."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        #: how many bytes to read from a fragment's start (learnt: moof + keyframe, see locate_keyframes)
        self.read_hint = MOOF_READ
        self._ctx: av.CodecContext | None = None
        self._key: tuple[str, bytes] | None = None

    def _context(self, codec: str, extradata: bytes | None) -> av.CodecContext:
        key = (codec, extradata or b"")
        if self._ctx is None or self._key != key:
            ctx = av.CodecContext.create(codec, "r")
            if extradata:
                ctx.extradata = extradata
            ctx.thread_count = self.threads
            ctx.thread_type = "SLICE"  # frame threads would delay output; slices don't
            self._ctx, self._key = ctx, key
        return self._ctx

    def decode(self, codec: str, extradata: bytes | None, data: bytes) -> av.VideoFrame:
        ctx = self._context(codec, extradata)
        try:
            frames = ctx.decode(av.Packet(data))
            if not frames:  # a decoder that holds pictures back for reordering: drain it
                frames = ctx.decode(None)
                self._ctx = None  # a drained context is not reused
        except av.error.FFmpegError as e:
            self._ctx = None
            raise ParseError(f"keyframe does not decode: {e}") from e
        if not frames:
            raise ParseError("keyframe decoded to no picture")
        return frames[0]


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as a (height, width) uint8 array, without colour conversion
    (4:2:0 / 4:2:2 / 4:4:4 8-bit pixel formats; others go through swscale)."""
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"):
        plane = frame.planes[0]
        arr = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return arr[:, : frame.width]
    return frame.to_ndarray(format="gray")


#: VCL NAL unit types (the coded picture; SEI, parameter sets and filler excluded)
_VCL = {"h264": range(1, 6), "hevc": range(0, 32)}


def coded_picture(codec: str, extradata: bytes | None, data: bytes) -> tuple[int, bytes]:
    """(bytes, digest) of the coded picture in one access unit (length-prefixed NAL
    units, the length size from ``avcC``/``hvcC``), counting only VCL NAL units, so
    that a camera's SEI timestamps or CBR filler change neither."""
    n = 4
    if extradata:
        if codec == "h264" and len(extradata) > 4:
            n = (extradata[4] & 3) + 1
        elif codec == "hevc" and len(extradata) > 21:
            n = (extradata[21] & 3) + 1
    vcl = _VCL.get(codec, range(0, 0))
    crc = 0  # CRC-32: four times cheaper than a cryptographic hash, and a collision only costs one more decode
    pos, total, size = 0, 0, len(data)
    while pos + n <= size:
        length = int.from_bytes(data[pos: pos + n], "big")
        pos += n
        if length <= 0 or pos + length > size:
            break
        first = data[pos]
        kind = first & 0x1F if codec == "h264" else (first >> 1) & 0x3F
        if kind in vcl:
            crc = zlib.crc32(memoryview(data)[pos: pos + length], crc)
            total += length
        pos += length
    return total, crc.to_bytes(4, "big")


class Keyframe:
    """One sampled keyframe: its time, what its bitstream says (:attr:`coded_bytes`,
    :attr:`digest`, :attr:`activity`) and its picture, decoded on first use of
    :attr:`frame` (raises :class:`ParseError` if it does not decode).  Reading a
    keyframe is cheap; decoding it is what costs (see :mod:`retention.content_job`)."""

    __slots__ = ("media_s", "_frame", "_decode", "coded_bytes", "digest", "activity")

    def __init__(self, media_s: float, frame: av.VideoFrame | None = None, *,
                 decode: Callable[[], av.VideoFrame] | None = None, coded_bytes: int = 0, digest: bytes = b"",
                 activity: int | None = None) -> None:
        if frame is None and decode is None:
            raise ValueError("a keyframe needs a frame or a way to decode one")
        self.media_s = media_s
        self._frame, self._decode = frame, decode
        self.coded_bytes, self.digest, self.activity = coded_bytes, digest, activity

    @property
    def decoded(self) -> bool:
        return self._frame is not None

    @property
    def frame(self) -> av.VideoFrame:
        if self._frame is None:
            self._frame = self._decode()
            self._decode = None
        return self._frame

    def __repr__(self) -> str:
        return f"Keyframe({self.media_s:.3f}s, {self.coded_bytes} B, decoded={self.decoded})"


@dataclass
class SampleStats:
    keyframes: int = 0
    reads: int = 0
    fallback: bool = False
    errors: list[str] = field(default_factory=list)


def sample_keyframes(src: ByteSource, every_s: float, first_at_s: float = 0.0, *,
                     decoder: KeyframeDecoder | None = None, stats: SampleStats | None = None,
                     whole: Callable[[], bytes] | None = None, lazy: bool = False) -> list[Keyframe]:
    """Keyframes of one segment, ``every_s`` apart (see :func:`locate_keyframes`),
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
    except (ParseError, struct.error, IndexError, _NeedMore) as e:
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
