"""RTP packets: what every depacketizer does with a packet before its payload -- the
fixed header, CSRCs, header extension and padding (RFC 3550 5.1, 5.3.1), the sequence
count (losses, duplicates, late packets) and the 32-bit timestamp unwrap -- and the
:class:`AccessUnit` they all hand out.  Video: :mod:`recorder.rtp_depacketize`; audio:
:mod:`recorder.rtp_audio`.  Pure code, no I/O.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

RTP_HEADER = struct.Struct("!BBHI")  # V/P/X/CC, M/PT, sequence number, timestamp


def _payload_bounds(p: memoryview, n: int, b0: int) -> tuple[int, int]:
    """(start, end) of an RTP packet's payload after CSRCs, header extension and
    padding (RFC 3550 5.1, 5.3.1); (0, 0) when the packet is too short for them."""
    off = 12 + ((b0 & 0x0F) << 2)
    if b0 & 0x10:  # header extension: skip it
        if n < off + 4:
            return 0, 0
        off += 4 + (((p[off + 2] << 8) | p[off + 3]) << 2)
    end = n - p[n - 1] if b0 & 0x20 else n  # padding
    return off, end


class AccessUnit(NamedTuple):
    #: the access unit's bytes (video: a ``bytearray`` the depacketizer no longer touches)
    data: bytes | bytearray
    #: RTP timestamp extended past its 32-bit wrap (same clock as the stream)
    ts: int
    key: bool
    damaged: bool


class _Unwrap:
    """32-bit RTP timestamps -> a monotone-ish 64-bit count (handles wrap both ways)."""

    __slots__ = ("last", "ext")

    def __init__(self) -> None:
        self.last: int | None = None
        self.ext = 0

    def __call__(self, ts: int) -> int:
        if self.last is None:
            self.last = ts
            self.ext = ts
            return ts
        d = (ts - self.last) & 0xFFFFFFFF
        if d >= 0x80000000:
            d -= 0x100000000
        self.last = ts
        self.ext += d
        return self.ext


class Depacketizer:
    """What every depacketizer does with a packet before its payload: the RTP header,
    the sequence count and the timestamp unwrap."""

    def __init__(self) -> None:
        self.out: list[AccessUnit] = []
        self.lost = 0  # RTP packets missing from the sequence
        self.malformed = 0
        self._seq = -1
        self._unwrap = _Unwrap()

    def _header(self, p: memoryview, min_size: int) -> tuple[int, int, int, int, int] | None:
        """(second header byte, sequence number, timestamp, payload start, payload end);
        None, counted as malformed, when the packet is shorter than ``min_size``."""
        n = len(p)
        if n < min_size:
            self.malformed += 1
            return None
        b0, b1, seq, ts = RTP_HEADER.unpack_from(p)
        off, end = _payload_bounds(p, n, b0)
        return b1, seq, ts, off, end

    def _sequence(self, seq: int) -> int | None:
        """How many packets were lost just before this one (0: none); None for a
        duplicate or a late packet, which is already past and is dropped."""
        expected = self._seq
        gap = 0
        if expected >= 0 and seq != expected:
            gap = (seq - expected) & 0xFFFF
            if gap >= 0x8000:
                return None
            self.lost += gap
        self._seq = (seq + 1) & 0xFFFF
        return gap
