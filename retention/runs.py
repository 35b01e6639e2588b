"""Bookkeeping shared by the retention jobs: run rows, findings, the one-run-at-a-time lock.

Every run of a job is a :class:`~index.models.JobRun` row (health reads the
latest of each job); what a run finds wrong is an
:class:`~index.models.IntegrityFinding`.  Each job holds its lock
(:func:`exclusive`) while it runs.  The jobs import this module and nothing of
each other's schedule; :mod:`retention.scheduler` sits above them all.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.coverage_locks import invalidate_segments
from index.joblock import job_lock
from index.models import IntegrityFinding, JobRun, Segment
from index.queries import db_errors
from labwitness.clock import Clock, utc_ms
from labwitness.errors import IndexUnavailableError, JobRefusedError
from retention.policy import DEFAULT_MAX_CLOCK_SKEW_S, DEFAULT_MAX_SHARE

log = logging.getLogger(__name__)

JOBS = ("sweep", "verify", "integrity", "reconcile", "rebuild", "content", "seal")
STATUSES = ("ok", "warning", "critical", "refused", "failed")


@dataclass
class JobResult:
    """What a run ended with (also what ``--json`` prints)."""

    job: str
    run_id: int | None
    status: str  # ok | warning | critical | refused | failed
    summary: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "run_id": self.run_id, "status": self.status, "dry_run": self.dry_run,
                "summary": self.summary, "findings": self.findings}


#: The lock each job holds while it runs (index.joblock).  The jobs that delete footage or
#: decide what the index says is stored share one: a rebuild or a reconcile running beside
#: a sweep would index, or report missing, versions the sweep is deleting.
JOB_LOCKS = {"sweep": "index-storage", "partitions": "index-storage", "reconcile": "index-storage", "rebuild": "index-storage",
             "verify": "verify", "integrity": "integrity", "content": "content", "seal": "seal"}


def exclusive(job: str, *, engine_arg: str = "engine", refused: Callable[[str, JobRefusedError], Any] | None = None):
    """Run the decorated job holding its lock (:data:`JOB_LOCKS`), in the scheduler or a CLI
    alike.  A run already going elsewhere makes this one a ``refused`` result (reason
    ``already_running``; the CLI exits 3) that writes no run row, so health keeps showing
    the run that is really going.  ``refused(job, error)`` builds that result (default: a
    :class:`JobResult`)."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            given = sig.bind_partial(*args, **kwargs).arguments
            target = given[engine_arg]
            with ExitStack() as held:
                try:
                    held.enter_context(job_lock(getattr(target, "engine", target), JOB_LOCKS[job]))
                except JobRefusedError as e:
                    log.warning("retention job %s refused (%s): %s", job, e.reason, e)
                    if refused is not None:
                        return refused(job, e)
                    return JobResult(job, None, "refused", {"reason": e.reason, "message": str(e)},
                                     dry_run=bool(getattr(given.get("cfg"), "dry_run", False)))
                return fn(*args, **kwargs)
        return run
    return deco


def mark_checked(engine: Engine, ids: list[int], column: str, at_ms: int) -> None:
    """Stamp segments as checked (``verified_ms`` by the integrity audit, ``lock_verified_ms``
    by lock verification), in one statement."""
    if not ids:
        return
    seg = Segment.__table__
    with db_errors(), engine.begin() as c:
        if column == "lock_verified_ms":  # the rolled-up lock arithmetic of their days is stale now
            invalidate_segments(c, ids)
        c.execute(update(seg).where(seg.c.id.in_(ids)).values({column: at_ms}))


class JobRecorder:
    """One ``job_run`` row from start to finish, and the findings of that run.

    Use as a context manager: an exception escaping the block marks the run
    ``failed`` (with the error in its summary) and propagates."""

    def __init__(self, engine: Engine, clock: Clock, job: str, *, dry_run: bool = False, actor: str = "scheduler") -> None:
        self.engine = engine
        self.clock = clock
        self.job = job
        self.dry_run = dry_run
        self.actor = actor
        self.run_id: int | None = None
        self.findings: list[dict[str, Any]] = []
        self.critical = 0
        self.warnings = 0
        self.result: JobResult | None = None

    def __enter__(self) -> "JobRecorder":
        with db_errors(), Session(self.engine) as s:
            row = JobRun(job=self.job, started_ms=utc_ms(self.clock.now()), dry_run=self.dry_run, actor=self.actor)
            s.add(row)
            s.commit()
            self.run_id = row.id
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and self.result is None:
            log.error("retention job %s (run %s) failed", self.job, self.run_id, exc_info=(exc_type, exc, tb))
            try:
                self.finish("failed", {"error": f"{type(exc).__name__}: {exc}"[:1500]})
            except IndexUnavailableError:
                pass  # the run stays "running": health shows it never finished

    def finding(self, kind: str, *, severity: str = "critical", camera_id: str = "", segment_id: int | None = None,
                key: str = "", version_id: str = "", detail: str = "") -> bool:
        """Record a finding unless the same one (kind, key, version) is still open; True if new."""
        entry = {"kind": kind, "severity": severity, "camera_id": camera_id, "segment_id": segment_id, "key": key,
                 "version_id": version_id, "detail": detail[:2000]}
        self.findings.append(entry)
        if severity == "critical":
            self.critical += 1
        else:
            self.warnings += 1
        with db_errors(), Session(self.engine) as s:
            q = select(IntegrityFinding.id).where(IntegrityFinding.kind == kind, IntegrityFinding.key == key,
                                                  IntegrityFinding.version_id == version_id,
                                                  IntegrityFinding.resolved_ms == None)  # noqa: E711
            if key == "" and segment_id is not None:
                q = q.where(IntegrityFinding.segment_id == segment_id)
            if s.exec(q).first() is not None:
                return False
            s.add(IntegrityFinding(job_run_id=self.run_id, found_ms=utc_ms(self.clock.now()), **entry))
            s.commit()
        log.log(logging.ERROR if severity == "critical" else logging.WARNING, "%s finding %s: %s@%s %s",
                self.job, kind, key, version_id, detail)
        return True

    def status(self, *, warning: bool = False) -> str:
        """ok / warning / critical from this run's findings (plus the caller's own warning)."""
        if self.critical:
            return "critical"
        return "warning" if (self.warnings or warning) else "ok"

    def finish(self, status: str, summary: dict[str, Any]) -> JobResult:
        if status not in STATUSES:
            raise ValueError(f"unknown job status {status!r}")
        summary = dict(summary)
        summary.setdefault("findings", len(self.findings))
        with db_errors(), Session(self.engine) as s:
            row = s.get(JobRun, self.run_id)
            row.status = status
            row.finished_ms = utc_ms(self.clock.now())
            row.summary = json.dumps(summary, ensure_ascii=False, default=str)
            s.add(row)
            s.commit()
        self.result = JobResult(self.job, self.run_id, status, summary, self.findings, self.dry_run)
        return self.result


def latest_runs(engine: Engine) -> dict[str, JobRun]:
    """The newest run of each job (for health and for scheduling)."""
    out: dict[str, JobRun] = {}
    with db_errors(), Session(engine, expire_on_commit=False) as s:
        for job in JOBS:
            row = s.exec(select(JobRun).where(JobRun.job == job).order_by(col(JobRun.started_ms).desc()).limit(1)).first()
            if row is not None:
                out[job] = row
    return out


@dataclass(frozen=True)
class JobsConfig:
    """Intervals and limits of the scheduled jobs (``api.settings`` fills it from ``LABWITNESS_*``)."""

    sweep_interval_h: float = 24.0
    verify_interval_h: float = 6.0
    integrity_interval_h: float = 1.0
    reconcile_interval_h: float = 24.0
    sweep_max_share: float = DEFAULT_MAX_SHARE
    sweep_max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    verify_sample: int = 200
    integrity_budget_bytes: int = 2 << 30
    integrity_budget_objects: int = 1000
    retention_months: int = 6
    content_interval_h: float = 0.25
    content_sample_seconds: float = 10.0
    coverage_refresh_min: float = 10.0  # health's day rollup (index.coverage)
    seal_interval_h: float = 1.0  # hourly seals (retention.seals)
    #: a seal older than 2 x interval + this is critical in health
    seal_grace_min: float = 15.0
    #: delay before a job that is overdue (or never ran) runs after start-up
    start_delay_s: float = 300.0
