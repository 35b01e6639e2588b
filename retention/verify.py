"""Lock verification: is the footage still locked the way the law needs?

Checks the bucket's Object Lock configuration, then reads back the retention
of a sample of stored versions (the newest not yet verified, plus a random
sample of older ones) and compares it with the index (``docs/retention.md``).
Never changes storage; sets ``segment.lock_verified_ms`` and records findings.
"""

from __future__ import annotations

import logging

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Segment
from index.queries import db_errors
from labwitness.clock import Clock, utc_ms
from labwitness.errors import ObjectNotFoundError
from retention.runs import JobRecorder, JobResult, exclusive, mark_checked
from retention.policy import lock_problem
from storage.base import ObjectStore

log = logging.getLogger(__name__)


def check_bucket(store: ObjectStore, run: JobRecorder) -> dict:
    cfg = store.lock_config()
    facts = {"object_lock": cfg.enabled, "versioning": cfg.versioning, "default_mode": cfg.mode,
             "default_days": cfg.days, "enforced_at_startup": store.info.retention_enforced}
    if not (cfg.enabled and cfg.versioning):
        run.finding("lock_missing", detail=f"bucket {store.bucket}: Object Lock enabled={cfg.enabled}, "
                                           f"versioning={cfg.versioning}: retention is NOT enforced by storage")
    elif cfg.mode is not None and cfg.mode != "COMPLIANCE":
        run.finding("lock_mismatch", detail=f"bucket {store.bucket}: default retention mode {cfg.mode}, expected COMPLIANCE")
    return facts


def sample_segments(engine: Engine, sample: int) -> list[Segment]:
    """Half the newest never-verified stored segments, the rest random among the others."""
    recent_n = max(1, sample // 2) if sample > 0 else 0
    with db_errors(), Session(engine, expire_on_commit=False) as s:
        recent = list(s.exec(select(Segment).where(Segment.status == "stored", Segment.lock_verified_ms == None)  # noqa: E711
                             .order_by(col(Segment.start_ms).desc()).limit(recent_n)))
        ids = [r.id for r in recent]
        q = select(Segment).where(Segment.status == "stored")
        if ids:
            q = q.where(col(Segment.id).not_in(ids))
        older = list(s.exec(q.order_by(func.random()).limit(max(0, sample - len(recent)))))
    return recent + older


@exclusive("verify")
def run_verify(store: ObjectStore, engine: Engine, clock: Clock, *, sample: int = 200,
               actor: str = "scheduler") -> JobResult:
    with JobRecorder(engine, clock, "verify", actor=actor) as run:
        bucket = check_bucket(store, run)
        checked = ok = 0
        verified: list[int] = []
        for seg in sample_segments(engine, sample):
            checked += 1
            try:
                obj, _ = store.stat(seg.key, seg.version_id, with_hold=False)
            except ObjectNotFoundError:
                run.finding("missing", camera_id=seg.camera_id, segment_id=seg.id, key=seg.key, version_id=seg.version_id,
                            detail="indexed version is not in storage")
                continue
            problem = lock_problem(mode=obj.mode, retain_until_ms=utc_ms(obj.retain_until) if obj.retain_until else None,
                                   row_retain_until_ms=seg.retain_until_ms, end_ms=seg.end_ms)
            if problem:
                run.finding(problem[0], camera_id=seg.camera_id, segment_id=seg.id, key=seg.key,
                            version_id=seg.version_id, detail=problem[1])
                continue
            ok += 1
            verified.append(seg.id)
        mark_checked(engine, verified, "lock_verified_ms", utc_ms(clock.now()))
        return run.finish(run.status(), {"bucket": bucket, "checked": checked, "ok": ok})
