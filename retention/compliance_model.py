"""The monthly compliance report's model: typed, frozen dataclasses and the verdict levels.

What :func:`retention.compliance.compliance_report` returns and
:mod:`retention.compliance_render` prints; the thresholds the verdict rules
(:mod:`retention.compliance_rules`) read.  Derived numbers (coverage ratios,
unaccounted time) are properties, so the JSON, the HTML page and the CSV sheet
all show the same arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from zoneinfo import ZoneInfo

from labwitness.clock import from_ms

COMPLIANT, PARTIAL, NOT_COMPLIANT = "compliant", "partial", "not_compliant"
LEVELS = (COMPLIANT, PARTIAL, NOT_COMPLIANT)
VERDICT_LABELS = {COMPLIANT: "合规 / compliant", PARTIAL: "部分合规 / partially compliant",
                  NOT_COMPLIANT: "不合规 / not compliant"}
#: The jobs whose runs the report shows, with their bilingual names; a run "completed" when it
#: ended ok, warning or critical.
JOB_NAMES = {"verify": "锁定校验 / lock verification", "integrity": "完整性审计 / integrity audit"}
REPORT_JOBS = tuple(JOB_NAMES)
COMPLETED = ("ok", "warning", "critical")
#: Integrity findings that are about the Object Lock (counted in :class:`LockStats`).
LOCK_KINDS = ("lock_missing", "lock_mismatch")


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
