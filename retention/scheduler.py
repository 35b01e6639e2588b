"""The retention jobs' schedule: each job on an APScheduler ``BackgroundScheduler``.

Sits above the jobs (sweep, verify, integrity, reconcile, content) and imports
them; they import only the bookkeeping below them (:mod:`retention.runs`).
``api.runtime`` builds the scheduler, starts and stops it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable, Sequence

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from index.coverage import CoverageStore
from index.partitions import ensure_partitions
from labwitness.clock import Clock, from_ms, utc_ms
from labwitness.errors import IndexUnavailableError
from retention import integrity, reconcile, sweep, verify
from retention.content_detect import ContentConfig
from labwitness.picture_samples import SampleSpool
from retention.content_job import ContentJobConfig, run_content_check
from retention.runs import JobResult, JobsConfig, latest_runs
from retention.time_witness import TimeSource
from storage.base import GuardedStore

log = logging.getLogger(__name__)


def next_run_time(last_started_ms: int | None, interval_h: float, now: datetime, start_delay_s: float) -> datetime:
    """When a job should first run after start-up: one interval after its last run,
    but not before ``start_delay_s`` (so a restart neither skips nor stampedes)."""
    earliest = now + timedelta(seconds=start_delay_s)
    if last_started_ms is None:
        return earliest
    return max(earliest, from_ms(last_started_ms) + timedelta(hours=interval_h))


def build_scheduler(store: GuardedStore, engine: Engine, clock: Clock, cfg: JobsConfig, *,
                    on_result: Callable[[JobResult], None] | None = None, time_sources: Sequence[TimeSource] = (),
                    seal: Callable[[], JobResult] | None = None, samples: SampleSpool | None = None):
    """A (not started) ``BackgroundScheduler`` running sweep, verify, integrity, reconcile,
    the content check and (when ``seal`` is given: :func:`retention.seals.run_seal` bound to
    its document spool and signer) the seals, and refreshing health's coverage rollup.
    ``time_sources``: the sweep's time witnesses (without any it refuses to delete); ``samples``:
    the recorder's sub-stream pictures, which the content check judges first."""

    def wrap(name: str, fn: Callable[[], JobResult]) -> Callable[[], None]:
        def run() -> None:
            try:
                res = fn()
            except Exception:  # recorded as a failed JobRun already; keep the scheduler alive
                log.exception("scheduled retention job %s failed", name)
                return
            log.info("retention job %s: %s %s", name, res.status, getattr(res, "summary", None) or res.to_json())
            if on_result is not None:
                on_result(res)
        run.__name__ = f"retention_{name}"
        return run

    jobs = {
        "sweep": (cfg.sweep_interval_h, lambda: sweep.run_sweep(
            store, engine, clock, sweep.SweepConfig(max_share=cfg.sweep_max_share, max_clock_skew_s=cfg.sweep_max_clock_skew_s,
                                                    retention_months=cfg.retention_months),
            witnesses=time_sources)),
        "verify": (cfg.verify_interval_h, lambda: verify.run_verify(store, engine, clock, sample=cfg.verify_sample)),
        "integrity": (cfg.integrity_interval_h, lambda: integrity.run_integrity(
            store, engine, clock, budget_bytes=cfg.integrity_budget_bytes, budget_objects=cfg.integrity_budget_objects)),
        "reconcile": (cfg.reconcile_interval_h, lambda: reconcile.run_reconcile(store, engine, clock, repair=True)),
        "content": (cfg.content_interval_h, lambda: run_content_check(
            engine, store, clock, ContentJobConfig(content=ContentConfig(sample_seconds=cfg.content_sample_seconds)),
            samples=samples)),
    }
    if seal is not None:
        jobs["seal"] = (cfg.seal_interval_h, seal)
    try:
        last = latest_runs(engine)
    except IndexUnavailableError:
        last = {}
    now = clock.now()
    sched = BackgroundScheduler(timezone="UTC")
    for name, (hours, fn) in jobs.items():
        if hours <= 0:
            continue  # 0 disables a job
        prev = last.get(name)
        sched.add_job(wrap(name, fn), "interval", hours=hours, id=f"retention-{name}", max_instances=1, coalesce=True,
                      next_run_time=next_run_time(prev.started_ms if prev else None, hours, now, cfg.start_delay_s))
    if cfg.coverage_refresh_min > 0:  # keeps health fast: closed days rolled up ahead of the next check
        coverage = CoverageStore(engine, lambda: utc_ms(clock.now()))

        def refresh_coverage() -> None:
            try:
                coverage.refresh()
            except Exception:
                log.exception("coverage rollup refresh failed")
        sched.add_job(refresh_coverage, "interval", minutes=cfg.coverage_refresh_min, id="coverage-refresh",
                      max_instances=1, coalesce=True, next_run_time=now + timedelta(seconds=cfg.start_delay_s / 5))
    if engine.dialect.name == "postgresql":  # months ahead exist before their first segment (index.partitions)
        def partitions() -> None:
            try:
                made = ensure_partitions(engine, utc_ms(clock.now()))
                if made:
                    log.info("index partitions created: %s", ", ".join(made))
            except Exception:
                log.exception("index partition maintenance failed")
        # start-up made them already (api.runtime): the first hourly pass waits like the jobs
        sched.add_job(partitions, "interval", hours=1, id="index-partitions", max_instances=1, coalesce=True,
                      next_run_time=now + timedelta(seconds=cfg.start_delay_s))
    return sched
