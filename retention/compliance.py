"""Monthly compliance report: did every camera of the testing areas record, keep
and lock its footage the way the rule asks (Guangxi 2015, Art. 7: video
surveillance of the main testing areas, recordings kept no less than 6 months)?

``compliance_report(engine, "2026-11", tz, now_ms)`` reads the index only and
returns typed dataclasses; :mod:`retention.compliance_render` turns them into a
printable HTML page or a CSV sheet.

The period is the calendar month in the lab's time zone, clipped at *now* for
the current month (``partial_month``).  A camera created during the month is
counted from its ``created_ms``.  Each index table is read with one aggregate
query over the month for all cameras (a month of 64 cameras is ~2.8 M segment
rows): segments of one camera never overlap, so recorded time is
``SUM(LEAST(end, hi) - GREATEST(start, lo))`` grouped by camera (and by UTC day,
which also gives the per-day lock arithmetic, see :func:`_lock_stats`).

What counts toward the verdict (:class:`ComplianceThresholds`):

* recorded coverage and usable coverage (recorded minus content events:
  blackout / frozen / obscured / moved) against "ok" and "partial" thresholds;
* a single gap longer than ``max_gap_s`` (partial);
* every segment of the month locked in COMPLIANCE mode until at least
  end + 6 calendar months (not compliant otherwise);
* open integrity findings of the month (critical -> not compliant, warning -> partial);
* the oldest retained footage reaching back ``required_days`` (183), or to the
  camera's registration when that is more recent;
* report-wide: lock verification and integrity audit completed at least one run
  in the period, bucket-level findings.

Disabled cameras and cameras no longer in the registry are listed with their
numbers but their coverage is not counted in their area's or the overall
verdict; the lock and integrity of their kept footage still is (report level).  An area's
verdict is the worst of its counted cameras'; an area without an enabled camera
is not compliant; cameras without an area form an "area" of their own when
one of them counts.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, literal_column, select
from sqlalchemy.engine import Connection, Engine

from index.models import Area, Camera, ContentEvent, Gap, IntegrityFinding, JobRun, Segment
from index.queries import MAX_SEGMENT_MS
from labwitness.clock import from_ms, utc_ms
from labwitness.errors import ValidationError
from retention.jobs import db_errors
from retention.policy import RetentionPolicy

DAY_MS = 86_400_000
COMPLIANT, PARTIAL, NOT_COMPLIANT = "compliant", "partial", "not_compliant"
LEVELS = (COMPLIANT, PARTIAL, NOT_COMPLIANT)
VERDICT_LABELS = {COMPLIANT: "合规 / compliant", PARTIAL: "部分合规 / partially compliant",
                  NOT_COMPLIANT: "不合规 / not compliant"}
#: Jobs whose runs the report shows; a run "completed" when it ended ok, warning or critical.
REPORT_JOBS = ("verify", "integrity")
COMPLETED = ("ok", "warning", "critical")
LOCK_KINDS = ("lock_missing", "lock_mismatch")
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")


# -- configuration ----------------------------------------------------------------

@dataclass(frozen=True)
class ComplianceThresholds:
    """What the verdict asks for; the defaults suit a lab inspection."""

    coverage_ok: float = 0.99  # recorded / period at or above: ok
    coverage_partial: float = 0.95  # at or above (but below ok): partial; below: not compliant
    usable_ok: float = 0.98  # (recorded - unusable) / period
    usable_partial: float = 0.90
    max_gap_s: float | None = 3600.0  # one gap longer than this: partial (None: not judged)
    required_days: int = 183  # oldest retained footage must reach back this far (6 months)
    oldest_tolerance_days: float = 1.0  # the sweep runs daily: allow a day of slack
    longest_gaps: int = 10  # per camera, in the report
    require_jobs: bool = True  # verify and integrity must have completed a run in the period

    def __post_init__(self) -> None:
        for name in ("coverage_ok", "coverage_partial", "usable_ok", "usable_partial"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be within [0, 1], got {v}")
        if self.coverage_partial > self.coverage_ok or self.usable_partial > self.usable_ok:
            raise ValueError("a 'partial' threshold cannot be above its 'ok' threshold")
        if self.required_days < 0 or self.longest_gaps < 0:
            raise ValueError("required_days and longest_gaps must be >= 0")


# -- the report ---------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    level: str  # compliant | partial | not_compliant
    reasons: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return VERDICT_LABELS[self.level]


@dataclass(frozen=True)
class GapItem:
    camera_id: str
    start_ms: int  # as recorded (may lie outside the period)
    end_ms: int
    reason: str
    duration_ms: int  # within the camera's period


@dataclass(frozen=True)
class ReasonStat:
    count: int
    duration_ms: int


@dataclass(frozen=True)
class GapStats:
    count: int = 0
    total_ms: int = 0
    by_reason: dict[str, ReasonStat] = field(default_factory=dict)
    longest: tuple[GapItem, ...] = ()

    @property
    def longest_ms(self) -> int:
        return max((g.duration_ms for g in self.longest), default=0)


@dataclass(frozen=True)
class LockStats:
    """Segments of the period: lock read back (verified) and their retain-until."""

    segments: int = 0
    verified: int = 0
    missing_retain_until: int = 0  # rows without a retain-until
    not_compliance_mode: int = 0  # rows whose lock mode is not COMPLIANCE
    below_legal_days: int = 0  # UTC days with a segment whose retain-until < end + 6 months
    min_retain_until_ms: int | None = None
    #: least (retain-until - (end + 6 calendar months)) over the segments, in days
    min_margin_days: float | None = None
    open_lock_findings: int = 0  # lock_missing / lock_mismatch found in the period, still open

    @property
    def verified_ratio(self) -> float | None:
        return self.verified / self.segments if self.segments else None

    @property
    def ok(self) -> bool:
        return (not self.missing_retain_until and not self.not_compliance_mode and not self.below_legal_days
                and not self.open_lock_findings)


@dataclass(frozen=True)
class IntegrityStats:
    """Integrity findings found in the period."""

    open_by_kind: dict[str, int] = field(default_factory=dict)
    resolved_by_kind: dict[str, int] = field(default_factory=dict)
    open_critical: int = 0
    open_warning: int = 0
    open_critical_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def open(self) -> int:
        return sum(self.open_by_kind.values())

    @property
    def resolved(self) -> int:
        return sum(self.resolved_by_kind.values())


@dataclass(frozen=True)
class CameraReport:
    camera_id: str
    name: str
    area_id: str | None
    enabled: bool
    in_registry: bool
    counted: bool  # counts toward its area's and the overall verdict
    created_ms: int | None
    start_ms: int  # the camera's part of the period
    end_ms: int
    recorded_ms: int
    unusable_ms: int  # recorded but not usable (content events), overlaps merged
    unusable_by_kind: dict[str, int]
    gaps: GapStats
    oldest_start_ms: int | None  # oldest stored footage of the camera (any month)
    oldest_age_days: float | None
    expected_days: float  # what the oldest footage should reach back to (<= required_days)
    lock: LockStats
    integrity: IntegrityStats
    notes: tuple[str, ...]
    verdict: Verdict

    @property
    def period_ms(self) -> int:
        return max(0, self.end_ms - self.start_ms)

    @property
    def coverage(self) -> float | None:
        return self.recorded_ms / self.period_ms if self.period_ms else None

    @property
    def usable_ms(self) -> int:
        return max(0, self.recorded_ms - self.unusable_ms)

    @property
    def usable_coverage(self) -> float | None:
        return self.usable_ms / self.period_ms if self.period_ms else None

    @property
    def unaccounted_ms(self) -> int:
        """Neither footage nor a recorded gap (e.g. the recorder was not running at all)."""
        return max(0, self.period_ms - self.recorded_ms - self.gaps.total_ms)


@dataclass(frozen=True)
class AreaReport:
    area_id: str | None  # None: cameras without an area
    name: str
    camera_ids: tuple[str, ...]  # every camera listed for the area
    counted_ids: tuple[str, ...]  # those counted in the verdict
    period_ms: int
    recorded_ms: int
    unusable_ms: int
    gap_count: int
    gap_ms: int
    lock_segments: int
    lock_verified: int
    integrity_open: int
    verdict: Verdict

    @property
    def coverage(self) -> float | None:
        return self.recorded_ms / self.period_ms if self.period_ms else None

    @property
    def usable_coverage(self) -> float | None:
        return max(0, self.recorded_ms - self.unusable_ms) / self.period_ms if self.period_ms else None

    @property
    def lock_verified_ratio(self) -> float | None:
        return self.lock_verified / self.lock_segments if self.lock_segments else None


@dataclass(frozen=True)
class JobStatus:
    job: str
    runs_by_status: dict[str, int]  # runs started in the period
    latest_status: str | None  # latest run overall (not only the period's)
    latest_started_ms: int | None
    latest_finished_ms: int | None

    @property
    def completed_in_period(self) -> int:
        return sum(n for s, n in self.runs_by_status.items() if s in COMPLETED)


@dataclass(frozen=True)
class ComplianceReport:
    month: str
    timezone: str
    start_ms: int  # local month start
    end_ms: int  # local month end (exclusive)
    until_ms: int  # end of what was evaluated: end_ms, or now for the current month
    partial_month: bool
    generated_ms: int
    retention_months: int
    retention_margin_days: int
    thresholds: ComplianceThresholds
    areas: tuple[AreaReport, ...]
    cameras: tuple[CameraReport, ...]
    jobs: tuple[JobStatus, ...]
    integrity: IntegrityStats  # every finding of the period (also bucket-level ones)
    lock: LockStats  # all segments of the period
    verdict: Verdict

    def local(self, ms: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        """An instant shown in the lab's time zone."""
        return "" if ms is None else from_ms(ms).astimezone(ZoneInfo(self.timezone)).strftime(fmt)

    def to_json(self) -> dict:
        """Plain JSON: every dataclass field plus the derived ratios, instants also as local ISO strings."""

        def iso(ms: int | None) -> str | None:
            return None if ms is None else from_ms(ms).astimezone(ZoneInfo(self.timezone)).isoformat(timespec="milliseconds")

        def verdict(v: Verdict) -> dict:
            return {"level": v.level, "label": v.label, "reasons": list(v.reasons)}

        def cam(c: CameraReport) -> dict:
            d = asdict(c)
            d.update(start=iso(c.start_ms), end=iso(c.end_ms), oldest_start=iso(c.oldest_start_ms),
                     period_ms=c.period_ms, coverage=c.coverage, usable_ms=c.usable_ms,
                     usable_coverage=c.usable_coverage, unaccounted_ms=c.unaccounted_ms, verdict=verdict(c.verdict))
            d["lock"]["verified_ratio"] = c.lock.verified_ratio
            d["lock"]["ok"] = c.lock.ok
            d["gaps"]["longest"] = [{**asdict(g), "start": iso(g.start_ms), "end": iso(g.end_ms)} for g in c.gaps.longest]
            d["integrity"].update(open=c.integrity.open, resolved=c.integrity.resolved)
            return d

        def area(a: AreaReport) -> dict:
            d = asdict(a)
            d.update(coverage=a.coverage, usable_coverage=a.usable_coverage, lock_verified_ratio=a.lock_verified_ratio,
                     verdict=verdict(a.verdict))
            return d

        return {
            "month": self.month, "timezone": self.timezone, "start": iso(self.start_ms), "end": iso(self.end_ms),
            "until": iso(self.until_ms), "start_ms": self.start_ms, "end_ms": self.end_ms, "until_ms": self.until_ms,
            "partial_month": self.partial_month, "generated": iso(self.generated_ms), "generated_ms": self.generated_ms,
            "retention": {"months": self.retention_months, "margin_days": self.retention_margin_days},
            "thresholds": asdict(self.thresholds), "verdict": verdict(self.verdict),
            "areas": [area(a) for a in self.areas], "cameras": [cam(c) for c in self.cameras],
            "jobs": [{**asdict(j), "completed_in_period": j.completed_in_period} for j in self.jobs],
            "integrity": {**asdict(self.integrity), "open": self.integrity.open, "resolved": self.integrity.resolved},
            "lock": {**asdict(self.lock), "verified_ratio": self.lock.verified_ratio, "ok": self.lock.ok},
        }


# -- the period -----------------------------------------------------------------------

def parse_month(month: str) -> tuple[int, int]:
    """``"2026-11"`` -> (2026, 11); ValidationError with a bilingual message otherwise."""
    m = _MONTH.fullmatch(month or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or not 1970 <= int(m.group(1)) <= 9998:
        raise ValidationError(f"月份格式应为 YYYY-MM / month must look like 2026-11, got {month!r}")
    return int(m.group(1)), int(m.group(2))


def month_bounds(month: str, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of the calendar month in ``tz``, as UTC milliseconds."""
    year, mon = parse_month(month)
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=tz)
    return utc_ms(start), utc_ms(end)


def previous_month(now_ms: int, tz: ZoneInfo) -> str:
    """The last complete calendar month in ``tz`` (the usual one to report on)."""
    first = from_ms(now_ms).astimezone(tz).replace(day=1)
    last = first - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


# -- interval helpers (pure) ----------------------------------------------------------

def merge_spans(spans) -> list[tuple[int, int]]:
    """Sorted, non-overlapping union of (start, end) spans; empty spans dropped."""
    out: list[list[int]] = []
    for lo, hi in sorted(s for s in spans if s[1] > s[0]):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


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


# -- SQL pieces -----------------------------------------------------------------------

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
class _SegAgg:
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

    def add(self, o: "_SegAgg") -> None:
        self.recorded_ms += o.recorded_ms
        self.segments += o.segments
        self.verified += o.verified
        self.missing_retain += o.missing_retain
        self.not_compliance += o.not_compliance
        self.below_legal_days += o.below_legal_days
        for name in ("min_retain_until_ms", "min_margin_ms"):
            a, b = getattr(self, name), getattr(o, name)
            setattr(self, name, b if a is None else a if b is None else min(a, b))


def _segments(conn: Connection, lo: int, hi: int, policy: RetentionPolicy) -> dict[str, _SegAgg]:
    """One aggregate over the period's stored segments, per camera and UTC day of their end.

    Per UTC day the legal minimum ``end + 6 calendar months`` is ``end + shift(day)`` with a
    constant shift (calendar arithmetic in UTC keeps the time of day), so
    ``MIN(retain_until - end)`` per day decides whether every segment of that day is locked
    long enough — exact, without reading the rows."""
    seg, cam = Segment.__table__, Camera.__table__
    start, end = _clipped(seg, cam, lo, hi)
    day = seg.c.end_ms.op("/")(literal_column(str(DAY_MS)))  # integer division on both databases
    q = (select(seg.c.camera_id, day.label("utc_day"),
                func.sum(end - start), func.count(), func.count(seg.c.lock_verified_ms),
                func.sum(case((seg.c.retain_until_ms.is_(None), 1), else_=0)),
                func.sum(case((seg.c.lock_mode == "COMPLIANCE", 0), else_=1)),
                func.min(seg.c.retain_until_ms - seg.c.end_ms), func.min(seg.c.retain_until_ms))
         .select_from(seg.outerjoin(cam, cam.c.id == seg.c.camera_id))
         .where(seg.c.status == "stored", seg.c.start_ms < hi, seg.c.start_ms > lo - MAX_SEGMENT_MS,
                seg.c.end_ms > lo, end > start)
         .group_by(seg.c.camera_id, literal_column("utc_day")))
    out: dict[str, _SegAgg] = {}
    for camera_id, d, rec, n, verified, missing, not_comp, min_diff, min_until in conn.execute(q):
        agg = _SegAgg(_int(rec), _int(n), _int(verified), _int(missing), _int(not_comp),
                      min_retain_until_ms=None if min_until is None else int(min_until))
        if min_diff is not None:
            day_start = int(d) * DAY_MS
            shift = utc_ms(policy.minimum(from_ms(day_start))) - day_start
            agg.min_margin_ms = int(min_diff) - shift
            agg.below_legal_days = int(agg.min_margin_ms < 0)
        out.setdefault(camera_id, _SegAgg()).add(agg)
    return out


def _gaps(conn: Connection, lo: int, hi: int, top: int) -> dict[str, GapStats]:
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


def _unusable(conn: Connection, lo: int, hi: int, windows: dict[str, tuple[int, int]]) -> dict[str, tuple[int, dict[str, int]]]:
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
        rec = merge_spans((max(s, wlo), min(e, whi)) for s, e in recorded.get(camera_id, ()))
        by_kind = {k: overlap_ms(_clip_events([x for x in evs if x[0] == k], wlo, whi), rec)
                   for k in sorted({x[0] for x in evs})}
        out[camera_id] = (overlap_ms(_clip_events(evs, wlo, whi), rec), by_kind)
    return out


def _clip_events(rows, lo: int, hi: int) -> list[tuple[int, int]]:
    return merge_spans((max(s, lo), min(e, hi)) for _, s, e in rows)


def _findings(conn: Connection, lo: int, hi: int) -> dict[str, dict[tuple[str, str, bool], int]]:
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


def _integrity(rows: dict[tuple[str, str, bool], int]) -> IntegrityStats:
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


def _open_lock(rows: dict[tuple[str, str, bool], int]) -> int:
    return sum(n for (kind, _, is_open), n in rows.items() if is_open and kind in LOCK_KINDS)


def _jobs(conn: Connection, lo: int, hi: int) -> tuple[JobStatus, ...]:
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


def _oldest(conn: Connection, camera_ids) -> dict[str, int]:
    """Oldest stored footage per camera: one index-ordered probe each (``LIMIT 1`` on
    (camera_id, start_ms)), never a scan of the whole six months."""
    seg = Segment.__table__
    out = {}
    for cid in camera_ids:
        v = conn.execute(select(seg.c.start_ms).where(seg.c.camera_id == cid, seg.c.status == "stored")
                         .order_by(seg.c.start_ms).limit(1)).scalar()
        if v is not None:
            out[cid] = int(v)
    return out


# -- verdicts ---------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _worst(levels) -> str:
    return max(levels, key=LEVELS.index, default=COMPLIANT)


def _keeping_problems(c: CameraReport) -> list[tuple[str, str]]:
    """Lock and integrity problems of the camera's footage: these count even for a camera that is
    disabled or removed (its footage is still kept, and must be kept right)."""
    found: list[tuple[str, str]] = []
    lk = c.lock
    if lk.missing_retain_until:
        found.append((NOT_COMPLIANT, f"{lk.missing_retain_until} 个片段没有保留期限 / {lk.missing_retain_until} "
                                     "segments have no retain-until"))
    if lk.not_compliance_mode:
        found.append((NOT_COMPLIANT, f"{lk.not_compliance_mode} 个片段未以 COMPLIANCE 模式锁定 / "
                                     f"{lk.not_compliance_mode} segments are not locked in COMPLIANCE mode"))
    if lk.below_legal_days:
        found.append((NOT_COMPLIANT, f"{lk.below_legal_days} 天的片段锁定期短于结束后 6 个月 / segments of "
                                     f"{lk.below_legal_days} days are locked for less than end + 6 months"))
    if lk.open_lock_findings:
        found.append((NOT_COMPLIANT, f"锁定校验失败 {lk.open_lock_findings} 项未解决 / {lk.open_lock_findings} "
                                     "open lock verification findings"))
    ig = c.integrity
    other = {k: n for k, n in ig.open_critical_by_kind.items() if k not in LOCK_KINDS}  # lock kinds: said above
    if other:
        n = sum(other.values())
        found.append((NOT_COMPLIANT, f"完整性问题 {n} 项未解决 / {n} open critical integrity findings "
                                     f"({', '.join(sorted(other))})"))
    if ig.open_warning:
        found.append((PARTIAL, f"完整性警告 {ig.open_warning} 项未解决 / {ig.open_warning} open integrity warnings"))
    return found


def _camera_verdict(c: CameraReport, t: ComplianceThresholds) -> Verdict:
    found: list[tuple[str, str]] = []
    if c.period_ms <= 0:
        return Verdict(COMPLIANT, ())
    cov, usable = c.coverage or 0.0, c.usable_coverage or 0.0
    if cov < t.coverage_ok:
        found.append((PARTIAL if cov >= t.coverage_partial else NOT_COMPLIANT,
                      f"录像覆盖率 {_pct(cov)} 低于 {_pct(t.coverage_ok)} / coverage {_pct(cov)} below {_pct(t.coverage_ok)}"))
    if usable < t.usable_ok:
        found.append((PARTIAL if usable >= t.usable_partial else NOT_COMPLIANT,
                      f"有效画面覆盖率 {_pct(usable)} 低于 {_pct(t.usable_ok)} / usable coverage {_pct(usable)} "
                      f"below {_pct(t.usable_ok)}"))
    if t.max_gap_s is not None and c.gaps.longest_ms > t.max_gap_s * 1000:
        found.append((PARTIAL, f"最长中断 {c.gaps.longest_ms / 3_600_000:.2f} 小时，超过 {t.max_gap_s / 3600:g} 小时 / "
                               f"longest gap {c.gaps.longest_ms / 3_600_000:.2f} h exceeds {t.max_gap_s / 3600:g} h"))
    found += _keeping_problems(c)
    if c.oldest_age_days is None:
        if c.expected_days > t.oldest_tolerance_days:
            found.append((NOT_COMPLIANT, "没有任何已存储的录像 / no stored footage at all"))
    elif c.oldest_age_days + t.oldest_tolerance_days < c.expected_days:
        found.append((NOT_COMPLIANT, f"最早录像仅 {c.oldest_age_days:.1f} 天前，应保留 {c.expected_days:.0f} 天 / "
                                     f"oldest footage is {c.oldest_age_days:.1f} days old, "
                                     f"{c.expected_days:.0f} days must be kept"))
    return Verdict(_worst(level for level, _ in found), tuple(text for _, text in found))


# -- the report ---------------------------------------------------------------------------

def compliance_report(engine: Engine, month: str, tz: ZoneInfo, now_ms: int, *,
                      thresholds: ComplianceThresholds | None = None,
                      policy: RetentionPolicy | None = None) -> ComplianceReport:
    """The compliance report of ``month`` ("YYYY-MM", calendar month in ``tz``) as of ``now_ms``.

    Raises ValidationError for a malformed month or one that has not begun yet."""
    t = thresholds or ComplianceThresholds()
    policy = policy or RetentionPolicy()
    lo, end = month_bounds(month, tz)
    if now_ms <= lo:
        raise ValidationError(f"月份 {month} 尚未开始 / month {month} has not begun yet")
    hi = min(end, now_ms)
    with db_errors(), engine.connect() as conn:
        areas = {a.id: a for a in conn.execute(select(Area.__table__)).all()}
        cams = {c.id: c for c in conn.execute(select(Camera.__table__)).all()}
        segs = _segments(conn, lo, hi, policy)
        gaps = _gaps(conn, lo, hi, t.longest_gaps)
        findings = _findings(conn, lo, hi)
        jobs = _jobs(conn, lo, hi)
        # Every camera that existed during the period, plus any with footage or gaps in it
        # (a removed camera's footage is kept, and reported).
        ids = sorted({cid for cid, c in cams.items() if c.created_ms < hi} | set(segs) | set(gaps))
        windows = {}
        for cid in ids:
            c = cams.get(cid)
            windows[cid] = (c.created_ms if c is not None and lo < c.created_ms < hi else lo, hi)
        unusable = _unusable(conn, lo, hi, windows)
        oldest = _oldest(conn, ids)

    cameras: list[CameraReport] = []
    for cid in ids:
        c = cams.get(cid)
        wlo, whi = windows[cid]
        notes = []
        if c is None:
            notes.append("已从登记中移除，录像仍保留；不计入结论 / removed from the registry, footage kept; not counted")
        else:
            if lo < c.created_ms < hi:
                notes.append(f"本月新增，自 {from_ms(c.created_ms).astimezone(tz):%Y-%m-%d %H:%M} 起计 / "
                             f"added during the month, counted from its registration")
            elif c.created_ms >= hi:
                notes.append("登记晚于本期，但本期有录像 / registered after this period but has footage in it")
            if not c.enabled:
                notes.append("已停用，不计入区域结论 / disabled: not counted in the area verdict")
        rows = findings.get(cid, {})
        agg = segs.get(cid, _SegAgg())
        un, un_kind = unusable.get(cid, (0, {}))
        old = oldest.get(cid)
        registered_days = (now_ms - c.created_ms) / DAY_MS if c is not None else float(t.required_days)
        report = CameraReport(
            camera_id=cid, name=c.name if c is not None else "", area_id=c.area_id if c is not None else None,
            enabled=bool(c.enabled) if c is not None else False, in_registry=c is not None,
            counted=c is not None and bool(c.enabled), created_ms=int(c.created_ms) if c is not None else None,
            start_ms=wlo, end_ms=whi, recorded_ms=agg.recorded_ms, unusable_ms=min(un, agg.recorded_ms),
            unusable_by_kind=un_kind, gaps=gaps.get(cid, GapStats()), oldest_start_ms=old,
            oldest_age_days=None if old is None else round((now_ms - old) / DAY_MS, 3),
            expected_days=round(max(0.0, min(float(t.required_days), registered_days)), 3),
            lock=agg.lock(_open_lock(rows)), integrity=_integrity(rows), notes=tuple(notes),
            verdict=Verdict(COMPLIANT))
        cameras.append(_with_verdict(report, t))

    area_reports = _areas(areas, cameras)
    total = _SegAgg()
    for a in segs.values():
        total.add(a)
    all_rows: dict[tuple[str, str, bool], int] = {}
    for rows in findings.values():
        for k, n in rows.items():
            all_rows[k] = all_rows.get(k, 0) + n
    found: list[tuple[str, str]] = []
    for a in area_reports:
        if a.verdict.level != COMPLIANT:
            found.append((a.verdict.level, f"{a.name or a.area_id or '未分配 / unassigned'}: {a.verdict.label}"))
    for c in cameras:
        if not c.counted:
            found += [(level, f"{c.camera_id}: {text}") for level, text in _keeping_problems(c)]
    unlisted = _integrity({k: n for cid, rows in findings.items() if cid and cid not in windows for k, n in rows.items()})
    if unlisted.open_critical:
        found.append((NOT_COMPLIANT, f"其他摄像机的完整性问题 {unlisted.open_critical} 项未解决 / {unlisted.open_critical} "
                                     f"open findings on footage of cameras without data this period "
                                     f"({', '.join(sorted(unlisted.open_by_kind))})"))
    bucket = _integrity(findings.get("", {}))
    if bucket.open_critical:
        found.append((NOT_COMPLIANT, f"存储桶级问题 {bucket.open_critical} 项未解决 / {bucket.open_critical} open "
                                     f"bucket-level findings ({', '.join(sorted(bucket.open_by_kind))})"))
    if t.require_jobs:
        for j in jobs:
            if not j.completed_in_period:
                name = {"verify": "锁定校验 / lock verification", "integrity": "完整性审计 / integrity audit"}[j.job]
                found.append((PARTIAL, f"{name}: 本期没有完成的运行 / no completed run in this period"))
    return ComplianceReport(
        month=month, timezone=str(tz.key), start_ms=lo, end_ms=end, until_ms=hi, partial_month=hi < end,
        generated_ms=now_ms, retention_months=policy.months, retention_margin_days=policy.margin_days,
        thresholds=t, areas=tuple(area_reports), cameras=tuple(cameras), jobs=jobs, integrity=_integrity(all_rows),
        lock=total.lock(_open_lock(all_rows)),
        verdict=Verdict(_worst(level for level, _ in found), tuple(text for _, text in found)))


def _with_verdict(c: CameraReport, t: ComplianceThresholds) -> CameraReport:
    from dataclasses import replace

    return replace(c, verdict=_camera_verdict(c, t))


def _areas(areas: dict, cameras: list[CameraReport]) -> list[AreaReport]:
    by_area: dict[str | None, list[CameraReport]] = {aid: [] for aid in areas}
    for c in cameras:
        by_area.setdefault(c.area_id if c.area_id in areas else None, []).append(c)
    out = []
    for aid in sorted(by_area, key=lambda a: (a is None, a or "")):
        cs = by_area[aid]
        counted = [c for c in cs if c.counted]
        if aid is None and not counted:
            continue  # no area and nothing counted (e.g. removed cameras): listed among the cameras only
        if not counted:
            verdict = Verdict(NOT_COMPLIANT, ("区域内没有启用的摄像机 / no enabled camera in this area",))
        else:
            reasons = tuple(f"{c.camera_id}: {r}" for c in counted for r in c.verdict.reasons)
            verdict = Verdict(_worst(c.verdict.level for c in counted), reasons)
        row = areas.get(aid)
        out.append(AreaReport(
            area_id=aid, name=row.name if row is not None else "未分配区域 / no area",
            camera_ids=tuple(c.camera_id for c in cs), counted_ids=tuple(c.camera_id for c in counted),
            period_ms=sum(c.period_ms for c in counted), recorded_ms=sum(c.recorded_ms for c in counted),
            unusable_ms=sum(c.unusable_ms for c in counted), gap_count=sum(c.gaps.count for c in counted),
            gap_ms=sum(c.gaps.total_ms for c in counted), lock_segments=sum(c.lock.segments for c in counted),
            lock_verified=sum(c.lock.verified for c in counted),
            integrity_open=sum(c.integrity.open for c in counted), verdict=verdict))
    return out


def render_html(report: ComplianceReport) -> str:
    """Printable HTML page (see :mod:`retention.compliance_render`)."""
    from retention.compliance_render import render_html as _render

    return _render(report)


def render_csv(report: ComplianceReport) -> str:
    """One row per camera, UTF-8 with BOM (see :mod:`retention.compliance_render`)."""
    from retention.compliance_render import render_csv as _render

    return _render(report)
