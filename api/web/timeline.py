"""A report window's timeline per camera, computed server-side (pure functions).

Input: the window [lo, hi) and, from ``RecordStore.report_footage``, the clips
(segment_id, start_ms, end_ms, sha256) and the uncovered parts with their
reasons (start_ms, end_ms, reason; ``index.tiling``), both in time order.
Output: bars in percent of the window, each ``footage`` (stored segments, merged
while they follow each other), ``pending`` (recorded, still in the spool waiting
for storage), ``gap`` (an interruption: a recorded reason or the camera offline
now) or ``missing`` (before the camera was registered, the future, or unknown).
A week of one-minute segments becomes a handful of bars, not ten thousand SVG
rectangles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from index.tiling import FUTURE, NOT_REGISTERED, PENDING_UPLOAD, UNKNOWN

JOIN_MS = 1500  # clips closer than this are drawn as one run (segments end where the next starts)
KINDS = ("footage", "pending", "gap", "missing")
_KIND_OF = {PENDING_UPLOAD: "pending", NOT_REGISTERED: "missing", FUTURE: "missing", UNKNOWN: "missing"}


def kind_of(reason: str) -> str:
    """The bar kind of an uncovered part's reason (any other reason is an interruption: ``gap``)."""
    return _KIND_OF.get(reason, "gap")


@dataclass(frozen=True)
class Bar:
    kind: str  # one of KINDS
    start_ms: int
    end_ms: int
    x: float  # percent of the window
    w: float
    reason: str = ""


@dataclass(frozen=True)
class Tick:
    x: float
    at_ms: int


def _runs(spans: Sequence[tuple[int, int]], lo: int, hi: int, join_ms: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        a, b = max(a, lo), min(b, hi)
        if b <= a:
            continue
        if out and a <= out[-1][1] + join_ms:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def bars(lo: int, hi: int, clips: Sequence[tuple], gaps: Sequence[tuple], join_ms: int | None = None) -> list[Bar]:
    """Footage runs, the uncovered parts (clipped to what no footage run covers) by
    their reason's kind, and anything left as missing."""
    span = hi - lo
    if span <= 0:
        return []
    join = JOIN_MS if join_ms is None else join_ms
    join = max(join, span // 2000)  # finer than 0.05 % of the bar cannot be seen
    footage = _runs([(c[1], c[2]) for c in clips], lo, hi, join)

    def pct(a: int, b: int) -> tuple[float, float]:
        return round((a - lo) * 100 / span, 3), round((b - a) * 100 / span, 3)

    out = [Bar("footage", a, b, *pct(a, b)) for a, b in footage]
    # uncovered parts, minus footage runs (a run joins clips across holes shorter than ``join``)
    explained: list[tuple[int, int, str]] = []
    for g in gaps:
        a, b, reason = max(g[0], lo), min(g[1], hi), g[2]
        for fa, fb in footage:
            if fb <= a or fa >= b:
                continue
            if fa > a:
                explained.append((a, fa, reason))
            a = max(a, fb)
            if a >= b:
                break
        if b > a:
            explained.append((a, b, reason))
    explained.sort()
    for a, b, reason in explained:
        out.append(Bar(kind_of(reason), a, b, *pct(a, b), reason=reason))
    # whatever is left (none, for parts from index.tiling) is missing without a reason
    covered = _runs([(a, b) for a, b in footage] + [(a, b) for a, b, _ in explained], lo, hi, 0)
    cursor = lo
    for a, b in covered + [(hi, hi)]:
        if a > cursor:
            out.append(Bar("missing", cursor, a, *pct(cursor, a)))
        cursor = max(cursor, b)
    return sorted(out, key=lambda b: (b.start_ms, b.kind))


def ticks(lo: int, hi: int, n: int = 5) -> list[Tick]:
    if hi <= lo or n < 2:
        return []
    return [Tick(round(i * 100 / (n - 1), 3), lo + (hi - lo) * i // (n - 1)) for i in range(n)]


def marker(lo: int, hi: int, at_ms: int) -> float | None:
    """Percent position of an instant inside the window, or None outside it."""
    if hi <= lo or not lo <= at_ms <= hi:
        return None
    return round((at_ms - lo) * 100 / (hi - lo), 3)
