"""RTP audio payloads -> access units: AAC (RFC 3640 MPEG4-GENERIC) and G.711 (RFC 3551).

On the shared base of :mod:`recorder.rtp_packet` (sequence checks, timestamp
unwrapping, the ``out`` list of :class:`~recorder.rtp_packet.AccessUnit`).
"""

from __future__ import annotations

from recorder.rtp_packet import AccessUnit, Depacketizer


class AacDepacketizer(Depacketizer):
    """MPEG4-GENERIC AAC-hbr / AAC-lbr (RFC 3640): one or more AUs per packet."""

    def __init__(self, size_length: int = 13, index_length: int = 3, index_delta_length: int = 3,
                 frame_samples: int = 1024) -> None:
        super().__init__()
        self.size_length = size_length
        self.index_length = index_length
        self.index_delta_length = index_delta_length
        self.frame_samples = frame_samples
        self._frag: list[bytes] = []
        self._frag_ts = -1

    def push(self, p: memoryview) -> None:
        header = self._header(p, 14)
        if header is None:
            return
        b1, seq, ts, off, end = header
        gap = self._sequence(seq)
        if gap is None:
            return
        if gap:
            self._frag.clear()
        if off + 2 > end:
            self.malformed += 1
            return
        hdr_bits = (p[off] << 8) | p[off + 1]
        hdr_bytes = (hdr_bits + 7) >> 3
        data = off + 2 + hdr_bytes
        if data > end:
            self.malformed += 1
            return
        bits = int.from_bytes(p[off + 2:data], "big")
        total = hdr_bytes * 8
        pos = 0
        sizes = []
        first = True
        while pos < hdr_bits:
            il = self.index_length if first else self.index_delta_length
            need = self.size_length + il
            if pos + need > hdr_bits:
                break
            size = (bits >> (total - pos - self.size_length)) & ((1 << self.size_length) - 1)
            sizes.append(size)
            pos += need
            first = False
        t = self._unwrap(ts)
        if len(sizes) == 1 and sizes[0] > end - data:  # one AU fragmented over packets
            if self._frag_ts != ts:
                self._frag.clear()
                self._frag_ts = ts
            self._frag.append(p[data:end].tobytes())
            if b1 & 0x80 and sum(map(len, self._frag)) >= sizes[0]:
                self.out.append(AccessUnit(b"".join(self._frag)[:sizes[0]], t, True, False))
                self._frag.clear()
            return
        for i, size in enumerate(sizes):
            if data + size > end:
                self.malformed += 1
                break
            self.out.append(AccessUnit(p[data:data + size].tobytes(), t + i * self.frame_samples, True, False))
            data += size

    def flush(self) -> None:
        self._frag.clear()


class G711Depacketizer(Depacketizer):
    """G.711 PCMA/PCMU (RFC 3551 4.5.14): the payload is the samples, one byte each; a packet is a unit."""

    def push(self, p: memoryview) -> None:
        h = self._header(p, 13)  # (b1, seq, ts, payload start, end)
        if h is not None and self._sequence(h[1]) is not None and h[4] > h[3]:
            self.out.append(AccessUnit(p[h[3]:h[4]].tobytes(), self._unwrap(h[2]), True, False))
