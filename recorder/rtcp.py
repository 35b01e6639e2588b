"""RTCP: the sender reports (the stream clock's wall-clock anchor) and BYE of a compound packet."""

from __future__ import annotations

import struct
from typing import NamedTuple


class SenderReport(NamedTuple):
    ssrc: int
    ntp: float  # seconds since 1900
    rtp: int


def parse_rtcp(p: memoryview) -> tuple[list[SenderReport], bool]:
    """(sender reports, saw BYE) of one compound RTCP packet."""
    reports: list[SenderReport] = []
    bye = False
    i, n = 0, len(p)
    while i + 4 <= n:
        pt = p[i + 1]
        length = (((p[i + 2] << 8) | p[i + 3]) + 1) * 4
        if pt == 200 and i + 28 <= n:
            ssrc, sec, frac, rtp = struct.unpack_from("!IIII", p, i + 4)
            reports.append(SenderReport(ssrc, sec + frac / 2**32, rtp))
        elif pt == 203:
            bye = True
        i += length
    return reports, bye
