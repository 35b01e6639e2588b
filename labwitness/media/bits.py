"""Bit-level reading of codec headers: fixed-width and exp-Golomb fields, emulation prevention removed.

The reader the H.264/H.265 parameter-set parser (:mod:`labwitness.media.h26x`) and the
AAC config parser (:mod:`labwitness.media.aac`) share.  Headers are a few dozen bytes,
so the whole header is held as one integer.
"""

from __future__ import annotations


class Bits:
    """Reads a header MSB first; raises ``ValueError`` when it ends early."""

    def __init__(self, data: bytes) -> None:
        self.v = int.from_bytes(data, "big")
        self.n = len(data) * 8
        self.pos = 0

    def u(self, k: int) -> int:
        """The next ``k`` bits as an unsigned number."""
        if self.pos + k > self.n:
            raise ValueError("parameter set truncated")
        self.pos += k
        return (self.v >> (self.n - self.pos)) & ((1 << k) - 1) if k else 0

    def ue(self) -> int:
        """An unsigned exp-Golomb code (ITU-T H.264 9.1)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """A signed exp-Golomb code (ITU-T H.264 9.1.1)."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def rbsp_bits(nal: bytes, header: int) -> Bits:
    """The payload of a NAL unit after its ``header`` bytes, emulation prevention bytes
    (``00 00 03``) removed, ready to read."""
    raw = bytearray()
    zeros = 0
    for b in nal[header:]:
        if zeros >= 2 and b == 3:  # emulation prevention byte
            zeros = 0
            continue
        raw.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return Bits(bytes(raw))
