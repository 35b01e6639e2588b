"""What retention health knows (:mod:`retention.health`): the facts :func:`~retention.health.gather`
reads and :func:`~retention.health.classify` judges, and the thresholds it judges them by."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from labwitness.clock import HOUR_MS
from retention.camera_clock import OSD_BOUND_S

@dataclass(frozen=True)
class Thresholds:
    coverage_warning: float = 0.99  # 24 h coverage below this: warning
    coverage_critical: float = 0.90  # ... below this: critical
    clock_offset_warning_s: float = OSD_BOUND_S  # retention.camera_clock: OSD time vs index time
    runway_warning_margin_days: float = 30.0
    job_stale_factor: float = 2.0
    #: the oldest export not finished (queued or being built) requested longer ago than this: warning
    #: (Settings.export_queue_warning_s)
    export_queue_warning_s: float = 1800.0


@dataclass
class CameraFacts:
    camera_id: str
    name: str = ""
    area_id: str | None = None
    enabled: bool = True
    last_segment_end_ms: int | None = None
    last_segment_age_s: float | None = None
    offline: bool = False
    coverage: dict[str, float] = field(default_factory=dict)  # window -> recorded share
    unusable: dict[str, float] = field(default_factory=dict)  # window -> share recorded but not usable
    usable_coverage: dict[str, float] = field(default_factory=dict)
    unusable_ongoing: list[str] = field(default_factory=list)  # content conditions still going on
    gaps_24h: list[dict] = field(default_factory=list)
    gap_reasons_7d: dict[str, int] = field(default_factory=dict)
    oldest_ms: int | None = None
    oldest_age_days: float | None = None
    bytes_183d: int = 0
    clock_offset_s: float | None = None
    #: camera clock minus the footage's index time, from the stream's RTCP sender reports
    #: (recorder.stream_clock; filled in by the service that runs the recorders)
    stream_clock_offset_s: float | None = None


@dataclass
class StorageFacts:
    retention_enforced: bool
    used_bytes: int = 0
    growth_bytes_per_day: float = 0.0  # see growth_per_day
    capacity_bytes: int | None = None  # None: unknown
    free_bytes: int | None = None
    runway_days: float | None = None  # days until full at the current rate; None: unknown or not growing
    needed_days: float = 0.0  # days until the sweep starts freeing space (the rule's window not yet filled)

    def set_capacity(self, total: int, free: int) -> None:
        self.capacity_bytes, self.free_bytes = total, free
        self.runway_days = round(free / self.growth_bytes_per_day, 1) if self.growth_bytes_per_day > 0 else None


@dataclass
class SealFacts:
    """The newest seal (retention.seals) and how often one is due; ``interval_h`` 0: seals are off."""

    interval_h: float = 0.0
    grace_min: float = 15.0
    newest_ms: int | None = None
    newest_seq: int | None = None

    @property
    def late_after_ms(self) -> int:
        """A seal older than this is late: two intervals (one missed run) plus the grace."""
        return int(2 * self.interval_h * HOUR_MS + self.grace_min * 60_000)


@dataclass
class ExportQueueFacts:
    """The export queue (index.exports): packages queued and being built, and the age of the
    oldest of them since it was requested (None: nothing waits)."""

    queued: int = 0
    running: int = 0
    oldest_age_s: float | None = None


@dataclass
class Facts:
    now_ms: int
    segment_seconds: float
    retention_days: float
    cameras: list[CameraFacts]
    storage: StorageFacts
    findings_open: dict[str, int] = field(default_factory=dict)  # kind -> count (critical and warning)
    findings_critical: int = 0
    jobs: dict[str, dict] = field(default_factory=dict)  # job -> latest run
    spool_backlog: int = 0
    upload_error: str = ""
    seals: SealFacts = field(default_factory=SealFacts)
    exports: ExportQueueFacts = field(default_factory=ExportQueueFacts)

    def to_dict(self) -> dict:
        return asdict(self)
