"""Reconcile the index with storage, both ways, per camera and month.

- A version without a row is re-indexed from its user metadata when that is
  safe (``repair``), else reported as ``orphan_object``.
- A row without its version is reported as ``orphan_row`` (critical while
  still within retention).  Rows and objects are never deleted here.

Rows are queried before the versions are listed, so a row always has its
object in the listing (rows are written after the PUT); a version newer than
the query is looked up again before it is called an orphan.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Iterator, Sequence

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from index.models import Segment
from index.queries import IndexStore, db_errors
from labwitness.clock import Clock, from_ms, utc_ms
from retention.integrity import sha256_of
from retention.runs import JobRecorder, JobResult, exclusive
from retention.rebuild import FOOTAGE_PREFIX, read_meta, row_from_object
from storage.base import ObjectStore

log = logging.getLogger(__name__)


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=timezone.utc)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def months_between(first_ms: int, last_ms: int) -> Iterator[tuple[int, int]]:
    a, b = from_ms(first_ms), from_ms(last_ms)
    y, m = a.year, a.month
    while (y, m) <= (b.year, b.month):
        yield y, m
        y, m = _next_month(y, m)


def storage_cameras(store: ObjectStore) -> set[str]:
    return {p[len(FOOTAGE_PREFIX):].strip("/") for p in store.list_prefixes(FOOTAGE_PREFIX)}


def storage_months(store: ObjectStore, camera_id: str) -> set[tuple[int, int]]:
    out = set()
    for yp in store.list_prefixes(f"{FOOTAGE_PREFIX}{camera_id}/"):
        for mp in store.list_prefixes(yp):
            parts = mp.strip("/").split("/")
            try:
                out.add((int(parts[-2]), int(parts[-1])))
            except (ValueError, IndexError):
                continue
    return out


class _Reconcile:
    def __init__(self, store: ObjectStore, engine: Engine, clock: Clock, run: JobRecorder, repair: bool) -> None:
        self.store, self.engine, self.clock, self.run, self.repair = store, engine, clock, run, repair
        self.index = IndexStore(engine)
        self.now_ms = utc_ms(clock.now())
        self.stats = {"cameras": 0, "months": 0, "rows": 0, "versions": 0, "orphan_rows": 0, "orphan_objects": 0,
                      "reindexed": 0, "garbage_rows_skipped": 0}

    def index_months(self, camera_id: str) -> set[tuple[int, int]]:
        seg = Segment.__table__
        with db_errors(), self.engine.connect() as c:
            lo, hi = c.execute(sa_select(func.min(seg.c.start_ms), func.max(seg.c.start_ms))
                               .where(seg.c.camera_id == camera_id)).one()
        return set(months_between(lo, hi)) if lo is not None else set()

    def month(self, camera_id: str, year: int, month: int) -> None:
        lo = utc_ms(_month_start(year, month))
        hi = utc_ms(_month_start(*_next_month(year, month)))
        with db_errors(), Session(self.engine, expire_on_commit=False) as s:
            rows = {(r.key, r.version_id): r for r in s.exec(select(Segment).where(
                Segment.camera_id == camera_id, Segment.start_ms >= lo, Segment.start_ms < hi))}
        prefix = f"{FOOTAGE_PREFIX}{camera_id}/{year:04d}/{month:02d}/"
        versions = {(v.key, v.version_id): v for v in self.store.list_versions(prefix) if not v.is_delete_marker}
        self.stats["months"] += 1
        self.stats["rows"] += len(rows)
        self.stats["versions"] += len(versions)
        for kv, row in rows.items():
            if kv in versions:
                continue
            if row.status == "garbage":
                self.stats["garbage_rows_skipped"] += 1  # the sweep finishes these
                continue
            in_retention = row.retain_until_ms is None or row.retain_until_ms > self.now_ms
            self.stats["orphan_rows"] += 1
            self.run.finding("orphan_row", severity="critical" if in_retention else "warning", camera_id=camera_id,
                             segment_id=row.id, key=row.key, version_id=row.version_id,
                             detail="indexed version is not in storage" + (" although still within retention" if in_retention else ""))
        indexed_keys = {k for k, _ in rows}
        for kv in sorted(set(versions) - set(rows)):
            self.orphan_object(camera_id, *kv, indexed_keys)

    def orphan_object(self, camera_id: str, key: str, version_id: str, indexed_keys: set[str]) -> None:
        with db_errors(), Session(self.engine) as s:
            same_key = list(s.exec(select(Segment.version_id).where(Segment.key == key)))
        if version_id in same_key:
            return  # indexed between our query and the listing
        where = dict(camera_id=camera_id, key=key, version_id=version_id)
        problem, meta, stored = self.unsafe(key, version_id, same_key)
        self.stats["orphan_objects"] += 1
        if problem:
            self.run.finding("orphan_object", detail=f"not re-indexed: {problem}", **where)
            return
        if not self.repair:
            self.run.finding("orphan_object", severity="warning",
                             detail="version without an index row; safe to re-index with "
                                    "`labwitness retention reconcile --repair`", **where)
            return
        self.index.add_segment(row_from_object(meta, stored))
        self.stats["reindexed"] += 1
        log.warning("reconcile re-indexed %s@%s from its metadata", key, version_id)

    def unsafe(self, key: str, version_id: str, other_versions: Sequence[str]):
        """(why re-indexing this version from its metadata is not safe or '', metadata, lock state)."""
        if other_versions:
            return (f"another version of this key is indexed ({', '.join(other_versions)[:200]}): the key was rewritten",
                    None, None)
        meta, stored, problem = read_meta(self.store, key, version_id)
        if meta is None:
            return problem or "not labwitness footage", None, None
        if meta.key != key:
            return f"metadata describes key {meta.key}", None, None
        if self.store.info.retention_enforced and (stored.mode != "COMPLIANCE" or stored.retain_until is None):
            return f"not COMPLIANCE-locked (mode={stored.mode})", None, None
        digest, size = sha256_of(self.store, key, version_id)
        if digest != meta.sha256 or size != meta.size:
            return (f"content hashes to {digest} ({size} bytes), metadata says {meta.sha256} ({meta.size} bytes)",
                    None, None)
        return "", meta, stored


@exclusive("reconcile")
def run_reconcile(store: ObjectStore, engine: Engine, clock: Clock, *, repair: bool = False, cameras: Sequence[str] | None = None,
                  actor: str = "scheduler") -> JobResult:
    with JobRecorder(engine, clock, "reconcile", actor=actor) as run:
        rc = _Reconcile(store, engine, clock, run, repair)
        if cameras:
            cams = set(cameras)
        else:
            with db_errors(), Session(engine) as s:
                cams = set(s.exec(select(Segment.camera_id).distinct())) | storage_cameras(store)
        for cam in sorted(cams):
            rc.stats["cameras"] += 1
            for y, m in sorted(rc.index_months(cam) | storage_months(store, cam)):
                rc.month(cam, y, m)
        rc.stats["repair"] = repair
        return run.finish(run.status(), rc.stats)
