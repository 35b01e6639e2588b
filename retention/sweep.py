"""Expiry sweep: delete footage versions whose retention is over — and nothing else.

The numbered procedure, its invariants and the recovery after an interrupted
run are in ``docs/retention.md``; the step numbers below refer to it.  What may
be deleted and the per-camera share limit are pure functions in
:mod:`retention.policy`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import and_, delete, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.coverage import CoverageStore
from index.partitions import drop_partition_if, segment_partitions
from index.journal import journal_rows
from index.models import Hold, Segment
from index.queries import db_errors
from index.segment_runs import settle as settle_runs
from labwitness.clock import Clock, from_ms, utc_ms
from labwitness.errors import JobRefusedError
from retention.runs import JobRecorder, JobResult, exclusive
from retention.policy import (
    DEFAULT_MAX_CLOCK_SKEW_S,
    DEFAULT_MAX_SHARE,
    clock_skew,
    effective_now,
    index_refusal,
    index_says_expired,
    partition_may_drop,
    may_delete,
    share_exceeded,
)
from retention.time_sources import read_all
from retention.time_witness import TimeSource, judge
from storage.base import GuardedStore

log = logging.getLogger(__name__)

SEG = Segment.__table__


@dataclass(frozen=True)
class SweepConfig:
    max_share: float = DEFAULT_MAX_SHARE
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    retention_months: int = 6  # the configured retention: an index younger than this is "fresh"
    batch_size: int = 100
    dry_run: bool = False
    cameras: Sequence[str] | None = None  # only these cameras (None: all)


_REFUSALS = {
    "index_empty": "索引为空，拒绝清理；请先执行 `labwitness index rebuild` / the index has no segments: refusing to sweep "
                   "(wrong or lost database? run `labwitness index rebuild`)",
    "index_fresh": "索引中最早的录像还不到一个保留期，拒绝清理 / the index's oldest footage is younger than one retention "
                   "period: nothing can have expired yet, refusing to sweep",
}


class _Sweep:
    def __init__(self, store: GuardedStore, engine: Engine, clock: Clock, cfg: SweepConfig, run: JobRecorder,
                 witnesses: Sequence[TimeSource] = ()) -> None:
        self.store, self.engine, self.clock, self.cfg, self.run = store, engine, clock, cfg, run
        self.witnesses = witnesses
        self.time: dict = {}  # the time witnesses' readings, for the summary and health
        self.enforced = store.info.retention_enforced
        self.kept: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.stopped: dict[str, dict] = {}
        self.planned_by_camera: dict[str, int] = {}
        self.would_delete: list[dict] = []

    # -- steps 2-3: refusals ---------------------------------------------------
    def check_clock(self) -> datetime:
        local = self.clock.now()
        server = self.store.server_time()
        skew = clock_skew(local, server)
        self.stats["clock_skew_s"] = round(skew, 3)
        if skew > self.cfg.max_clock_skew_s:
            raise JobRefusedError("clock_skew",
                                  f"本机时钟与对象存储相差 {skew:.0f} 秒，拒绝清理 / our clock ({local.isoformat()}) and the object "
                                  f"store's ({server.isoformat()}) differ by {skew:.0f} s (> {self.cfg.max_clock_skew_s:.0f} s): "
                                  "refusing to sweep; fix NTP on this host or the store")
        return effective_now(local, server)

    def check_witnesses(self) -> None:
        """Step 3, after the index: the host clock against witnesses that do not share it
        (:mod:`retention.time_witness`); nothing has been deleted yet."""
        readings, absent = read_all(self.witnesses, self.clock)
        v = judge(self.clock.now(), readings, absent, self.cfg.max_clock_skew_s)
        self.time = {"time_verdict": v.reason, "time_witnesses": [r.to_json() for r in [*readings, *absent]]}
        if not v.ok:
            raise JobRefusedError(v.reason, v.message)

    def check_index(self, now_ms: int) -> None:
        with db_errors(), self.engine.connect() as c:
            n, oldest = c.execute(sa_select(func.count(), func.min(SEG.c.start_ms))
                                  .where(SEG.c.status.in_(("stored", "garbage")))).one()
        reason = index_refusal(n, oldest, now_ms, self.cfg.retention_months)
        if reason:
            raise JobRefusedError(reason, _REFUSALS[reason])

    # -- helpers -----------------------------------------------------------------
    def _camera_filter(self, q):
        return q.where(col(Segment.camera_id).in_(list(self.cfg.cameras))) if self.cfg.cameras else q

    def _held_ids(self) -> set[int]:
        with db_errors(), Session(self.engine) as s:
            return set(s.exec(select(Hold.segment_id).where(Hold.released_ms == None)))  # noqa: E711

    def _set_status(self, ids: list[int], old: str, new: str) -> int:
        if not ids:
            return 0
        with db_errors(), self.engine.begin() as c:
            n = c.execute(update(SEG).where(and_(SEG.c.id.in_(ids), SEG.c.status == old)).values(status=new)).rowcount
            settle_runs(c)  # the kept runs follow, in this transaction (index.segment_runs)
            return n

    def _coverage(self, segs: list[Segment]) -> None:
        """Stored footage changed on these segments' days: drop the rolled-up coverage there
        (``index.coverage`` invariant 4) so health recomputes it."""
        spans: dict[str, tuple[int, int]] = {}
        for sg in segs:
            lo, hi = spans.get(sg.camera_id, (sg.start_ms, sg.end_ms))
            spans[sg.camera_id] = (min(lo, sg.start_ms), max(hi, sg.end_ms))
        if not spans:
            return
        cov = CoverageStore(self.engine, lambda: utc_ms(self.clock.now()))
        for cam, (lo, hi) in spans.items():
            cov.invalidate(cam, lo, hi)

    def _mark_garbage(self, ids: list[int]) -> set[int]:
        """Mark stored rows garbage; returns the ids that are garbage now (a row changed
        meanwhile by someone else is left alone)."""
        if not ids:
            return set()
        with db_errors(), self.engine.begin() as c:
            c.execute(update(SEG).where(and_(SEG.c.id.in_(ids), SEG.c.status == "stored")).values(status="garbage"))
            settle_runs(c)  # the kept runs follow, in this transaction (index.segment_runs)
            return set(c.execute(sa_select(SEG.c.id).where(and_(SEG.c.id.in_(ids), SEG.c.status == "garbage"))).scalars())

    def _remove_garbage_rows(self, ids: list[int]) -> int:
        if not ids:
            return 0
        with db_errors(), self.engine.begin() as c:
            gone = c.execute(sa_select(SEG.c.id, SEG.c.camera_id, SEG.c.key, SEG.c.version_id).where(
                and_(SEG.c.id.in_(ids), SEG.c.status == "garbage"))).all()
            # in the same transaction: the journal says which versions the sweep deleted, so a
            # rebuild drops them without listing all footage (index.journal)
            journal_rows(c, "segment_deleted", [dict(r._mapping) for r in gone])
            return c.execute(delete(SEG).where(and_(SEG.c.id.in_(ids), SEG.c.status == "garbage"))).rowcount

    def _storage_verdict(self, seg: Segment, obj, now_ms: int, held: set[int]):
        """:func:`may_delete` on the index row and what storage read back; a lock storage
        would not tell is a lock (and a finding: someone must look at the store)."""
        v = may_delete(now_ms=now_ms, end_ms=seg.end_ms, retain_until_ms=seg.retain_until_ms, held=seg.id in held,
                       stored_retain_until_ms=utc_ms(obj.retain_until) if obj.retain_until else None,
                       legal_hold=obj.legal_hold, store_enforced=self.enforced, lock_unreadable=bool(obj.lock_unreadable))
        if v.reason == "storage_lock_unreadable":
            self.run.finding("lock_unreadable", severity="warning", camera_id=seg.camera_id, segment_id=seg.id,
                             key=seg.key, version_id=seg.version_id,
                             detail=f"{obj.lock_unreadable}; 未删除 / not deleted: a lock that cannot be read counts as a lock")
        return v

    def _lock_mismatch(self, seg: Segment, why: str) -> None:
        self.run.finding("lock_mismatch", severity="warning", camera_id=seg.camera_id, segment_id=seg.id, key=seg.key,
                         version_id=seg.version_id,
                         detail=f"index retain-until {from_ms(seg.retain_until_ms).isoformat() if seg.retain_until_ms else None} "
                                f"is over but storage keeps it: {why}")

    # -- step 8-9: delete through the guard, then remove rows ----------------------
    def _delete_batch(self, segs: list[Segment], now: datetime, read_back: dict | None = None) -> None:
        results = self.store.delete_versions([(s.key, s.version_id) for s in segs], now, read_back=read_back)
        done, back = [], []
        for s in segs:
            r = results.get((s.key, s.version_id), "error: no answer")
            if r is None or r == "gone":
                done.append(s.id)
                self.stats["deleted" if r is None else "already_gone"] += 1
                if r is None:
                    self.stats["deleted_bytes"] += s.size
            elif r.startswith("locked"):
                back.append(s.id)
                self._lock_mismatch(s, r)
            else:
                self.stats["delete_errors"] += 1  # stays garbage: the next run finishes it
                log.error("sweep: deleting %s@%s failed: %s", s.key, s.version_id, r)
        self._remove_garbage_rows(done)
        self._set_status(back, "garbage", "stored")
        self._coverage(segs)
        self.stats["restored"] += len(back)

    # -- step 4: recovery ------------------------------------------------------------
    def recover(self, now: datetime, held: set[int]) -> None:
        with db_errors(), Session(self.engine, expire_on_commit=False) as s:
            garbage = list(s.exec(self._camera_filter(select(Segment).where(Segment.status == "garbage"))
                                  .order_by(col(Segment.id))))
        self.stats["garbage_found"] = len(garbage)
        if not garbage or self.cfg.dry_run:
            return
        now_ms = utc_ms(now)
        gone, deletable, back = [], [], []
        read = self.store.stat_versions([(s.key, s.version_id) for s in garbage])
        for seg in garbage:
            obj = read[(seg.key, seg.version_id)]
            if obj is None:
                gone.append(seg.id)
                continue
            v = self._storage_verdict(seg, obj, now_ms, held)
            if v.ok:
                deletable.append(seg)
            else:
                back.append(seg.id)
                if v.reason != "storage_lock_unreadable":  # reported as such already
                    self._lock_mismatch(seg, v.reason)
        self.stats["recovered_rows_removed"] += self._remove_garbage_rows(gone)
        self._set_status(back, "garbage", "stored")
        self._coverage(garbage)
        self.stats["restored"] += len(back)
        for i in range(0, len(deletable), self.cfg.batch_size):
            before = self.stats["deleted"]
            self._delete_batch(deletable[i:i + self.cfg.batch_size], now)
            self.stats["recovered_deleted"] += self.stats["deleted"] - before

    # -- steps 5-9 -----------------------------------------------------------------------
    def plan(self, now_ms: int, held: set[int]) -> dict[str, list[Segment]]:
        with db_errors(), Session(self.engine, expire_on_commit=False) as s:
            rows = list(s.exec(self._camera_filter(
                select(Segment).where(Segment.status == "stored", Segment.retain_until_ms <= now_ms))
                .order_by(col(Segment.camera_id), col(Segment.start_ms))))
        plan: dict[str, list[Segment]] = {}
        for seg in rows:
            v = index_says_expired(now_ms=now_ms, end_ms=seg.end_ms, retain_until_ms=seg.retain_until_ms, held=seg.id in held)
            if v.ok:
                plan.setdefault(seg.camera_id, []).append(seg)
            else:
                self.kept[v.reason] += 1
        for cam in list(plan):
            with db_errors(), self.engine.connect() as c:
                total = c.execute(sa_select(func.coalesce(func.sum(SEG.c.end_ms - SEG.c.start_ms), 0)).where(
                    SEG.c.camera_id == cam, SEG.c.status.in_(("stored", "garbage")))).scalar_one()
            total = int(total)  # PostgreSQL sums BIGINT as NUMERIC
            planned = sum(s.end_ms - s.start_ms for s in plan[cam])
            self.planned_by_camera[cam] = len(plan[cam])
            if share_exceeded(planned, int(total), self.cfg.max_share):
                share = planned / total if total else 1.0
                self.stopped[cam] = {"share": round(share, 4), "delete_ms": planned, "total_ms": int(total),
                                     "segments": len(plan[cam])}
                log.error("sweep stopped for camera %s: it would delete %.1f%% of its footage (limit %.1f%%); "
                          "confirm with `labwitness retention sweep --camera %s --max-share %.2f`",
                          cam, share * 100, self.cfg.max_share * 100, cam, min(1.0, share + 0.01))
                del plan[cam]
        return plan

    def execute(self, plan: dict[str, list[Segment]], now: datetime, held: set[int]) -> None:
        now_ms = utc_ms(now)
        for cam, segs in plan.items():
            for i in range(0, len(segs), self.cfg.batch_size):
                batch = []
                chunk = segs[i:i + self.cfg.batch_size]
                read = self.store.stat_versions([(s.key, s.version_id) for s in chunk])
                for seg in chunk:
                    obj = read[(seg.key, seg.version_id)]
                    if obj is None:
                        self.kept["object_missing"] += 1
                        self.run.finding("missing", severity="warning", camera_id=cam, segment_id=seg.id, key=seg.key,
                                         version_id=seg.version_id,
                                         detail="expired row's version is not in storage; row kept for review")
                        continue
                    v = self._storage_verdict(seg, obj, now_ms, held)
                    if not v.ok:
                        self.kept[v.reason] += 1
                        continue
                    batch.append(seg)
                if self.cfg.dry_run:
                    self.would_delete += [{"segment_id": s.id, "camera_id": s.camera_id, "key": s.key,
                                           "version_id": s.version_id, "size": s.size} for s in batch]
                    continue
                marked = self._mark_garbage([s.id for s in batch])  # step 7: the row first
                self._coverage(batch)
                self._delete_batch([s for s in batch if s.id in marked], now, read)  # steps 8-9

    def summary(self, now: datetime) -> dict:
        out = {"now": now.isoformat(), "max_share": self.cfg.max_share, "planned": self.planned_by_camera,
               "kept": dict(self.kept), "stopped_cameras": self.stopped, **{k: v for k, v in self.stats.items()},
               **self.time}
        for k in ("deleted", "deleted_bytes", "restored", "delete_errors"):
            out.setdefault(k, 0)
        if self.cfg.dry_run:
            out["would_delete"] = len(self.would_delete)
            out["would_delete_bytes"] = sum(w["size"] for w in self.would_delete)
            out["would_delete_versions"] = self.would_delete[:1000]
        return out


@exclusive("sweep")
def run_sweep(store: GuardedStore, engine: Engine, clock: Clock, cfg: SweepConfig | None = None, *,
              actor: str = "scheduler", witnesses: Sequence[TimeSource] = ()) -> JobResult:
    """One sweep; returns its result (``refused`` changes nothing).  Raises only
    when the store or the index fails mid-way (the run is then recorded ``failed``).
    ``witnesses``: the time sources checked before anything is deleted (none: the
    sweep refuses, ``no_time_witness``); ``api.runtime`` builds them."""
    cfg = cfg or SweepConfig()
    share_exceeded(0, 0, cfg.max_share)  # validates max_share before anything happens
    with JobRecorder(engine, clock, "sweep", dry_run=cfg.dry_run, actor=actor) as run:
        sw = _Sweep(store, engine, clock, cfg, run, witnesses)
        try:
            now = sw.check_clock()
            sw.check_index(utc_ms(now))
            sw.check_witnesses()
        except JobRefusedError as e:
            log.error("sweep refused (%s): %s", e.reason, e)
            return run.finish("refused", {"reason": e.reason, "message": str(e), **dict(sw.stats), **sw.time})
        held = sw._held_ids()
        sw.recover(now, held)
        sw.execute(sw.plan(utc_ms(now), held), now, held)
        if not cfg.dry_run:  # step 10: months left empty by this and earlier runs (PostgreSQL)
            sw.stats["partitions_dropped"] += len(drop_empty_months(engine, utc_ms(now), cfg.retention_months))
        warn = bool(sw.stopped) or sw.stats["delete_errors"] > 0
        return run.finish(run.status(warning=warn), sw.summary(now))


def drop_empty_months(engine: Engine, now_ms: int, retention_months: int) -> list[str]:
    """Drop every month partition of ``segment`` that :func:`retention.policy.partition_may_drop`
    allows (no row left, the month past retention); returns their names.  Only under the
    ``index-storage`` lock: :func:`run_sweep` calls it holding it, :func:`run_partition_drop`
    takes it.  Nothing on SQLite."""
    def allowed(part, rows_left: int) -> bool:
        return partition_may_drop(month_end_ms=part.hi_ms, now_ms=now_ms, retention_months=retention_months,
                                  rows_left=rows_left)

    return [p.name for p in segment_partitions(engine)
            if p.hi_ms is not None and allowed(p, 0) and drop_partition_if(engine, p.name, allowed)]


@exclusive("partitions", refused=lambda job, e: None)
def run_partition_drop(engine: Engine, now_ms: int, retention_months: int) -> list[str] | None:
    """:func:`drop_empty_months` on its own, holding the sweep's lock; None when a sweep (or
    reconcile, rebuild) holds it."""
    return drop_empty_months(engine, now_ms, retention_months)
