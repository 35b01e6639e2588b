"""Tiling a footage window into stored footage and reasoned gaps (pure policy).

Every millisecond of a window [lo, hi) that no stored clip covers is given
exactly one reason, so that clips + gaps always tile the window: an inspector
never meets a coverage figure with nothing said about the rest.

Reasons, strongest first (an instant that several explain gets the first):

1. ``pending_upload`` — footage recorded into the local spool and not stored and
   indexed yet (storage or the index is down or behind), including the segment
   being written now;
2. a recorded gap's own reason (``timeout``, ``refused``, ``spool_full`` ...):
   a ``Gap`` row, or a finished gap journaled in the spool and not indexed yet;
3. ``camera_offline`` — the outage still going on (the spool's open gap), from
   its start until now; ``since_ms`` is its start (it may lie before the window)
   and ``detail`` its cause;
4. ``not_registered`` — before the camera was registered;
5. ``future`` — after now (a test still running, or the margin after it);
6. ``unknown`` — none of these (e.g. no recorder ran and none wrote a gap down).

The spool is reached through :class:`SpoolView`, a narrow interface handed in by
the caller: ``index`` must not import ``recorder`` (``recorder.spool_view``
implements it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol, Sequence

PENDING_UPLOAD = "pending_upload"
CAMERA_OFFLINE = "camera_offline"
NOT_REGISTERED = "not_registered"
FUTURE = "future"
UNKNOWN = "unknown"
REASONS = (PENDING_UPLOAD, CAMERA_OFFLINE, NOT_REGISTERED, FUTURE, UNKNOWN)  # besides the recorded ones

Span = tuple[int, int]


@dataclass(frozen=True)
class OpenGap:
    """An interruption that has not ended yet (the spool's ``gap-open.json``)."""

    start_ms: int
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class SpoolState:
    """What one camera's spool holds that the index does not know yet."""

    pending: tuple[Span, ...] = ()  # segments committed or being written, not stored+indexed
    gaps: tuple[tuple[int, int, str], ...] = ()  # finished gaps journaled, not indexed
    open_gap: OpenGap | None = None


NOTHING_SPOOLED = SpoolState()


class SpoolView(Protocol):
    def state(self, camera_ids: Sequence[str]) -> Mapping[str, SpoolState]:
        """Spool state of each camera that has one (others may be left out)."""
        ...


@dataclass(frozen=True)
class Part:
    """An uncovered part of a window and why."""

    start_ms: int
    end_ms: int
    reason: str
    detail: str = ""
    since_ms: int | None = None


def uncovered(lo: int, hi: int, clips: Iterable[Span], *, gaps: Iterable[tuple] = (),
              registered_ms: int | None = None, spool: SpoolState = NOTHING_SPOOLED,
              now_ms: int | None = None) -> list[Part]:
    """The parts of [lo, hi) no clip covers, each with its reason, in time order.

    ``clips``: (start, end) of stored footage, any order, may overlap or stick out
    of the window.  ``gaps``: recorded gaps as (start, end, reason[, detail]).
    ``now_ms`` None: nothing is said about an open outage or the future."""
    if hi <= lo:
        return []
    holes = _complement(merged_runs(clips, lo, hi), lo, hi)
    og = spool.open_gap
    layers: list[list[tuple[int, int, str, str, int | None]]] = [
        [(a, b, PENDING_UPLOAD, "", None) for a, b in spool.pending],
        [(g[0], g[1], g[2], g[3] if len(g) > 3 else "", None) for g in (*gaps, *spool.gaps)],
        [(og.start_ms, now_ms, CAMERA_OFFLINE, f"{og.reason}: {og.detail}" if og.detail else og.reason, og.start_ms)]
        if og is not None and now_ms is not None else [],
        [(lo, registered_ms, NOT_REGISTERED, "", None)] if registered_ms is not None else [],
        [(now_ms, hi, FUTURE, "", None)] if now_ms is not None else [],
    ]
    parts: list[Part] = []
    for layer in layers:
        if not holes:
            break
        taken, holes = _take(holes, _disjoint(layer))
        parts += taken
    parts += [Part(a, b, UNKNOWN) for a, b in holes]
    return _joined(sorted(parts, key=lambda p: p.start_ms))


def spans_coverage(clips: Iterable[Span], spans: Sequence[Span]) -> float:
    """Share of the (disjoint) ``spans`` covered by ``clips``; 0.0 for no spans."""
    total = sum(b - a for a, b in spans if b > a)
    if total <= 0:
        return 0.0
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    runs = merged_runs(clips, lo, hi)
    covered, j = 0, 0
    for a, b in sorted(spans):
        while j < len(runs) and runs[j][1] <= a:
            j += 1
        k = j
        while k < len(runs) and runs[k][0] < b:
            covered += max(0, min(b, runs[k][1]) - max(a, runs[k][0]))
            k += 1
    return covered / total


def merged_runs(spans: Iterable[Span], lo: int, hi: int) -> list[Span]:
    """Spans clipped to [lo, hi), overlapping or touching ones joined, in order: a
    week of contiguous one-minute clips becomes a few runs, computed once per window
    and then cheap to measure, complement or intersect (bench/report_query)."""
    out: list[Span] = []
    run_a = run_b = None
    for a, b in sorted(spans):  # already in order from the index: sorting costs one comparison each
        if b <= lo or a >= hi or b <= a:
            continue
        if run_b is not None and a <= run_b:
            if b > run_b:
                run_b = b
        else:
            if run_b is not None:
                out.append((run_a, run_b))
            run_a, run_b = a, b
    if run_b is None:
        return out
    out.append((run_a, run_b))
    # only the first run can start before the window and only the last end after it
    out[0] = (max(out[0][0], lo), out[0][1])
    out[-1] = (out[-1][0], min(out[-1][1], hi))
    return out


def _complement(runs: list[Span], lo: int, hi: int) -> list[Span]:
    out, cursor = [], lo
    for a, b in runs:
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < hi:
        out.append((cursor, hi))
    return out


def _disjoint(layer: list[tuple[int, int, str, str, int | None]]) -> list[tuple[int, int, str, str, int | None]]:
    """One layer's explanations without overlaps: the earlier-starting one keeps the overlap."""
    out: list[tuple[int, int, str, str, int | None]] = []
    for a, b, reason, detail, since in sorted(layer, key=lambda x: (x[0], x[1])):
        if out:
            a = max(a, out[-1][1])
        if b > a:
            out.append((a, b, reason, detail, since))
    return out


def _take(holes: list[Span], layer: list[tuple[int, int, str, str, int | None]]) -> tuple[list[Part], list[Span]]:
    """Explain what ``layer`` covers of ``holes`` (both sorted and disjoint); also
    return what it leaves unexplained.  One pass over both lists."""
    taken: list[Part] = []
    left: list[Span] = []
    j = 0
    for a, b in holes:
        cursor = a
        while j < len(layer) and layer[j][1] <= cursor:
            j += 1
        k = j
        while k < len(layer) and layer[k][0] < b:
            la, lb, reason, detail, since = layer[k]
            s, e = max(la, cursor), min(lb, b)
            if e > s:
                if s > cursor:
                    left.append((cursor, s))
                taken.append(Part(s, e, reason, detail, since))
                cursor = e
            if lb > b:
                break  # the explanation goes on into the next hole
            k += 1
        j = k
        if cursor < b:
            left.append((cursor, b))
    return taken, left


def _joined(parts: list[Part]) -> list[Part]:
    """Neighbouring parts with the same explanation become one (back-to-back spooled segments)."""
    out: list[Part] = []
    for p in parts:
        q = out[-1] if out else None
        if q is not None and q.end_ms == p.start_ms and (q.reason, q.detail, q.since_ms) == (p.reason, p.detail, p.since_ms):
            out[-1] = Part(q.start_ms, p.end_ms, q.reason, q.detail, q.since_ms)
        else:
            out.append(p)
    return out


def prefer_newer_epoch(segments: Sequence, max_len_ms: int) -> list:
    """Overlapping segments of a failover, de-duplicated (docs/cluster.md): a segment whose whole span is
    covered by segments of a *higher* lease epoch is left out; partly covered ones stay (they hold
    footage nothing else has).  Rows need ``start_ms``, ``end_ms`` and ``epoch`` (None: 0) and are
    sorted by start; no segment is longer than ``max_len_ms``.  Nothing is deleted: this is a view."""
    starts = [s.start_ms for s in segments]
    out = []
    for s in segments:
        mine = s.epoch or 0
        lo = bisect.bisect_right(starts, s.start_ms - max_len_ms)
        hi = bisect.bisect_left(starts, s.end_ms)
        newer = sorted((o.start_ms, o.end_ms) for o in segments[lo:hi] if (o.epoch or 0) > mine and o.end_ms > s.start_ms)
        at = s.start_ms
        for a, b in newer:
            if a > at:
                break
            at = max(at, b)
        if at < s.end_ms:
            out.append(s)
    return out
