"""The compliance report's index reads: one aggregate query per table over the month.

A month of 64 cameras is ~2.8 M segment rows, so nothing here reads them one
by one: segments of one camera never overlap, so recorded time is
``SUM(LEAST(end, hi) - GREATEST(start, lo))`` grouped by camera (and by UTC day,
which also gives the per-day lock arithmetic, see :func:`segment_stats`).  Each
read returns the report model's types (:mod:`retention.compliance_model`).

These queries stay in ``retention`` rather than ``index`` because they are the
report's own: the lock arithmetic needs the retention policy (``index`` does not
import ``retention``), and what they return is the report's model; the generic
pieces (``MAX_SEGMENT_MS``, ``db_errors``, :func:`index.tiling.merged_runs`) come
from ``index``, as they do for the other retention jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, func, literal, literal_column, select
from sqlalchemy.engine import Connection

from index.camera_facts import oldest_stored, segment_cameras
from index.coverage import unrolled_cameras
from index.models import Camera, ContentEvent, CoverageDay, Gap, IntegrityFinding, JobRun, Segment
from index.queries import MAX_SEGMENT_MS
from index.tiling import merged_runs
from labwitness.clock import DAY_MS, from_ms, utc_ms
from retention.compliance_model import (
    LOCK_KINDS, REPORT_JOBS, GapItem, GapStats, IntegrityStats, JobStatus, LockStats, ReasonStat,
)
from retention.policy import RetentionPolicy


def overlap_ms(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Length of the intersection of two merged span lists."""
    i = j = total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _clipped(t, cam, lo: int, hi: int):
    """(start, end) of ``t``'s rows clipped to each camera's part of [lo, hi): from the
    camera's ``created_ms`` when it was registered inside the period (outer join: a camera
    no longer in the registry counts from ``lo``)."""
    lo_c = case((and_(cam.c.created_ms > lo, cam.c.created_ms < hi), cam.c.created_ms), else_=literal(lo))
    start = case((t.c.start_ms > lo_c, t.c.start_ms), else_=lo_c)
    end = case((t.c.end_ms < hi, t.c.end_ms), else_=literal(hi))
    return start, end


def _int(v) -> int:
    return int(v or 0)  # PostgreSQL's SUM(bigint) is numeric (Decimal)


@dataclass
class SegmentAgg:
    recorded_ms: int = 0
    segments: int = 0
    verified: int = 0
    missing_retain: int = 0
    not_compliance: int = 0
    below_legal_days: int = 0
    min_retain_until_ms: int | None = None
    min_margin_ms: int | None = None

    def lock(self, open_lock_findings: int) -> LockStats:
        return LockStats(self.segments, self.verified, self.missing_retain, self.not_compliance, self.below_legal_days,
                         self.min_retain_until_ms,
                         None if self.min_margin_ms is None else round(self.min_margin_ms / DAY_MS, 3),
                         open_lock_findings)

    def add(self, o: "SegmentAgg") -> None:
        self.recorded_ms += o.recorded_ms
        self.segments += o.segments
        self.verified += o.verified
        self.missing_retain += o.missing_retain
        self.not_compliance += o.not_compliance
        self.below_legal_days += o.below_legal_days
        for name in ("min_retain_until_ms", "min_margin_ms"):
            a, b = getattr(self, name), getattr(o, name)
            setattr(self, name, b if a is None else a if b is None else min(a, b))


def _segment_rows(conn: Connection, lo: int, hi: int, *where):
    """(camera, UTC day of the end, recorded ms, count, verified, no retain-until, not COMPLIANCE,
    least retain_until - end, least retain_until) over the period's stored segments (``where``
    narrows them), recorded time clipped to each camera's part of the period."""
    seg, cam = Segment.__table__, Camera.__table__
    start, end = _clipped(seg, cam, lo, hi)
    day = seg.c.end_ms.op("/")(literal_column(str(DAY_MS)))  # integer division on both databases
    return conn.execute(
        select(seg.c.camera_id, day.label("utc_day"),
               func.sum(end - start), func.count(), func.count(seg.c.lock_verified_ms),
               func.sum(case((seg.c.retain_until_ms.is_(None), 1), else_=0)),
               func.sum(case((seg.c.lock_mode == "COMPLIANCE", 0), else_=1)),
               func.min(seg.c.retain_until_ms - seg.c.end_ms), func.min(seg.c.retain_until_ms))
        .select_from(seg.outerjoin(cam, cam.c.id == seg.c.camera_id))
        .where(seg.c.status == "stored", seg.c.start_ms < hi, seg.c.start_ms > lo - MAX_SEGMENT_MS,
               seg.c.end_ms > lo, end > start, *where)
        .group_by(seg.c.camera_id, literal_column("utc_day")))


def _add_day(out: dict[str, SegmentAgg], policy: RetentionPolicy, camera_id: str, d: int, rec, n, verified, missing,
             not_comp, min_diff, min_until) -> None:
    """One camera-day's numbers into ``out``; ``d``: the UTC day's index (day start / DAY_MS)."""
    agg = SegmentAgg(_int(rec), _int(n), _int(verified), _int(missing), _int(not_comp),
                     min_retain_until_ms=None if min_until is None else int(min_until))
    if min_diff is not None:
        day_start = int(d) * DAY_MS
        shift = utc_ms(policy.minimum(from_ms(day_start))) - day_start
        agg.min_margin_ms = int(min_diff) - shift
        agg.below_legal_days = int(agg.min_margin_ms < 0)
    out.setdefault(camera_id, SegmentAgg()).add(agg)


def segment_stats(conn: Connection, lo: int, hi: int, policy: RetentionPolicy,
                  rolled_before: int | None = None) -> dict[str, SegmentAgg]:
    """The period's stored segments per camera, summed per UTC day of their end.

    Per UTC day the legal minimum ``end + 6 calendar months`` is ``end + shift(day)`` with a
    constant shift (calendar arithmetic in UTC keeps the time of day), so
    ``MIN(retain_until - end)`` per day decides whether every segment of that day is locked
    long enough — exact, without reading the rows.

    ``rolled_before``: the first day the coverage rollup has not closed yet
    (:meth:`index.coverage.CoverageStore.first_open_day`); None reads every row.  Otherwise the
    days whose segments lie wholly inside the period come from ``coverage_day``'s ``lock_*``
    columns (the same sums, per day of the end, ``index.coverage`` invariant 5) for every camera
    whose rollup has all of them, and only the period's edges are read from ``segment``; a camera
    registered during the period or with days missing from its rollup is read whole, as before."""
    out: dict[str, SegmentAgg] = {}
    # days [i_lo, i_hi): every segment ending in them starts after lo (it is shorter than
    # MAX_SEGMENT_MS) and ends before hi, so its numbers need no clipping
    i_lo = -(-(lo + MAX_SEGMENT_MS) // DAY_MS) * DAY_MS
    i_hi = min(hi // DAY_MS * DAY_MS, rolled_before) if rolled_before is not None else i_lo
    if i_hi <= i_lo:
        for row in _segment_rows(conn, lo, hi):
            _add_day(out, policy, *row)
        return out
    seg, cam, cov = Segment.__table__, Camera.__table__, CoverageDay.__table__
    cams = segment_cameras(conn)
    created_inside = set(conn.execute(select(cam.c.id).where(cam.c.created_ms > lo, cam.c.created_ms < hi)).scalars())
    firsts = oldest_stored(conn, cams)
    days: dict[str, list] = {}
    for row in conn.execute(select(cov.c.camera_id, cov.c.day_ms, cov.c.lock_segments, cov.c.lock_recorded_ms,
                                   cov.c.lock_verified, cov.c.lock_missing_retain, cov.c.lock_not_compliance,
                                   cov.c.lock_min_margin_ms, cov.c.lock_min_until_ms)
                            .where(cov.c.day_ms >= i_lo, cov.c.day_ms < i_hi, cov.c.lock_segments.is_not(None))):
        days.setdefault(row[0], []).append(row)
    # segments indexed since the rollup's last check (a spool drained late) may be missing from it
    late = unrolled_cameras(conn, i_lo - MAX_SEGMENT_MS, i_hi) if days else set()
    rolled, whole = [], []
    for c in cams:
        if c not in firsts:
            continue  # nothing stored at all
        first_day = max(i_lo, firsts[c] // DAY_MS * DAY_MS)
        have = {int(r[1]) for r in days.get(c, ()) if int(r[1]) >= first_day}
        complete = c not in created_inside and c not in late and all(d in have for d in range(first_day, i_hi, DAY_MS))
        (rolled if complete else whole).append(c)
    for c in rolled:
        for _cam, day_ms, n, rec, verified, missing, not_comp, min_diff, min_until in days.get(c, ()):
            if n:
                _add_day(out, policy, c, int(day_ms) // DAY_MS, rec, n, verified, missing, not_comp, min_diff, min_until)
    if rolled:  # the edges: segments ending before i_lo or from i_hi on
        for edge in (and_(seg.c.start_ms < i_lo, seg.c.end_ms < i_lo),
                     and_(seg.c.start_ms >= i_hi - MAX_SEGMENT_MS, seg.c.end_ms >= i_hi)):
            for row in _segment_rows(conn, lo, hi, seg.c.camera_id.in_(rolled), edge):
                _add_day(out, policy, *row)
    if whole:
        for row in _segment_rows(conn, lo, hi, seg.c.camera_id.in_(whole)):
            _add_day(out, policy, *row)
    return out


def gap_stats(conn: Connection, lo: int, hi: int, top: int) -> dict[str, GapStats]:
    """Gap count and clipped duration per camera and reason, and each camera's longest gaps."""
    gap, cam = Gap.__table__, Camera.__table__
    start, end = _clipped(gap, cam, lo, hi)
    joined = gap.outerjoin(cam, cam.c.id == gap.c.camera_id)
    where = (gap.c.start_ms < hi, gap.c.end_ms > lo, end > start)
    by: dict[str, dict[str, ReasonStat]] = {}
    for camera_id, reason, n, total in conn.execute(
            select(gap.c.camera_id, gap.c.reason, func.count(), func.sum(end - start)).select_from(joined)
            .where(*where).group_by(gap.c.camera_id, gap.c.reason)):
        by.setdefault(camera_id, {})[reason] = ReasonStat(_int(n), _int(total))
    longest: dict[str, list[GapItem]] = {}
    if top > 0:
        dur = (end - start).label("dur")
        rank = func.row_number().over(partition_by=gap.c.camera_id, order_by=(dur.desc(), gap.c.start_ms)).label("rn")
        inner = (select(gap.c.camera_id, gap.c.start_ms, gap.c.end_ms, gap.c.reason, dur, rank)
                 .select_from(joined).where(*where).subquery())
        for r in conn.execute(select(inner).where(inner.c.rn <= top).order_by(inner.c.camera_id, inner.c.rn)):
            longest.setdefault(r.camera_id, []).append(GapItem(r.camera_id, int(r.start_ms), int(r.end_ms), r.reason,
                                                               int(r.dur)))
    return {cid: GapStats(sum(s.count for s in reasons.values()), sum(s.duration_ms for s in reasons.values()),
                          dict(sorted(reasons.items())), tuple(longest.get(cid, ())))
            for cid, reasons in by.items()}


def unusable(conn: Connection, lo: int, hi: int, windows: dict[str, tuple[int, int]]) -> dict[str, tuple[int, dict[str, int]]]:
    """Recorded-but-unusable ms per camera (any kind merged) and per kind.

    Content events are few; the segments they overlap are read through one join driven by
    the events (an index range scan per event), and intersected here, so an event that
    outlasts the footage (the camera went offline while blacked out) only counts footage."""
    ev, seg = ContentEvent.__table__, Segment.__table__
    events: dict[str, list] = {}
    for camera_id, kind, s, e in conn.execute(select(ev.c.camera_id, ev.c.kind, ev.c.start_ms, ev.c.end_ms)
                                             .where(ev.c.start_ms < hi, ev.c.end_ms > lo)):
        events.setdefault(camera_id, []).append((kind, int(s), int(e)))
    if not events:
        return {}
    q = (select(seg.c.camera_id, seg.c.start_ms, seg.c.end_ms).distinct()
         .select_from(ev.join(seg, and_(seg.c.camera_id == ev.c.camera_id, seg.c.start_ms < ev.c.end_ms,
                                        seg.c.start_ms > ev.c.start_ms - MAX_SEGMENT_MS, seg.c.end_ms > ev.c.start_ms)))
         .where(ev.c.start_ms < hi, ev.c.end_ms > lo, seg.c.status == "stored", seg.c.start_ms < hi,
                seg.c.end_ms > lo))
    recorded: dict[str, list] = {}
    for camera_id, s, e in conn.execute(q):
        recorded.setdefault(camera_id, []).append((int(s), int(e)))
    out = {}
    for camera_id, evs in events.items():
        wlo, whi = windows.get(camera_id, (lo, hi))
        rec = merged_runs(recorded.get(camera_id, ()), wlo, whi)
        by_kind = {k: overlap_ms(_event_runs([x for x in evs if x[0] == k], wlo, whi), rec)
                   for k in sorted({x[0] for x in evs})}
        out[camera_id] = (overlap_ms(_event_runs(evs, wlo, whi), rec), by_kind)
    return out


def _event_runs(rows, lo: int, hi: int) -> list[tuple[int, int]]:
    """(kind, start, end) events as merged runs clipped to [lo, hi)."""
    return merged_runs(((s, e) for _, s, e in rows), lo, hi)


def finding_counts(conn: Connection, lo: int, hi: int) -> dict[str, dict[tuple[str, str, bool], int]]:
    """Findings found in the period: camera -> (kind, severity, open) -> count ('' = bucket-level)."""
    f = IntegrityFinding.__table__
    is_open = case((f.c.resolved_ms.is_(None), 1), else_=0).label("is_open")
    out: dict[str, dict] = {}
    for camera_id, kind, severity, op, n in conn.execute(
            select(f.c.camera_id, f.c.kind, f.c.severity, is_open, func.count())
            .where(f.c.found_ms >= lo, f.c.found_ms < hi)
            .group_by(f.c.camera_id, f.c.kind, f.c.severity, literal_column("is_open"))):
        out.setdefault(camera_id or "", {})[(kind, severity, bool(op))] = _int(n)
    return out


def integrity_stats(rows: dict[tuple[str, str, bool], int]) -> IntegrityStats:
    open_by: dict[str, int] = {}
    resolved_by: dict[str, int] = {}
    crit_by: dict[str, int] = {}
    warn = 0
    for (kind, severity, is_open), n in rows.items():
        target = open_by if is_open else resolved_by
        target[kind] = target.get(kind, 0) + n
        if is_open:
            if severity == "warning":
                warn += n
            else:
                crit_by[kind] = crit_by.get(kind, 0) + n
    return IntegrityStats(dict(sorted(open_by.items())), dict(sorted(resolved_by.items())), sum(crit_by.values()), warn,
                          dict(sorted(crit_by.items())))


def open_lock_findings(rows: dict[tuple[str, str, bool], int]) -> int:
    return sum(n for (kind, _, is_open), n in rows.items() if is_open and kind in LOCK_KINDS)


def job_statuses(conn: Connection, lo: int, hi: int) -> tuple[JobStatus, ...]:
    j = JobRun.__table__
    runs: dict[str, dict[str, int]] = {}
    for job, status, n in conn.execute(select(j.c.job, j.c.status, func.count())
                                       .where(j.c.job.in_(REPORT_JOBS), j.c.started_ms >= lo, j.c.started_ms < hi)
                                       .group_by(j.c.job, j.c.status)):
        runs.setdefault(job, {})[status] = _int(n)
    out = []
    for job in REPORT_JOBS:
        latest = conn.execute(select(j.c.status, j.c.started_ms, j.c.finished_ms).where(j.c.job == job)
                              .order_by(j.c.started_ms.desc(), j.c.id.desc()).limit(1)).first()
        out.append(JobStatus(job, dict(sorted(runs.get(job, {}).items())), latest.status if latest else None,
                             int(latest.started_ms) if latest else None,
                             int(latest.finished_ms) if latest and latest.finished_ms is not None else None))
    return tuple(out)


def oldest_footage(conn: Connection, camera_ids) -> dict[str, int]:
    """Oldest stored footage per camera: index-ordered probes inside one statement for the
    registered cameras (:func:`index.camera_facts.oldest_stored`), never a scan of six months."""
    return oldest_stored(conn, list(camera_ids))
