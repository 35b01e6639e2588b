"""Integrity audit: do the stored bytes still hash to what the index recorded?

Within a budget (bytes and objects per run): the newest never-verified
segments, then a rolling sample of older ones (least recently verified
first, random among ties), so that every segment is re-hashed once per cycle.
Each version is streamed and SHA-256 hashed; the key's version list must not
show a newer version than the indexed one (a key rewritten with storage
credentials).  ``missing`` and ``altered`` findings are critical.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Segment
from index.queries import db_errors
from labwitness.clock import Clock, utc_ms
from labwitness.errors import ObjectNotFoundError
from retention.runs import JobRecorder, JobResult, exclusive, mark_checked
from storage.base import ObjectStore

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def pick(engine: Engine, budget_bytes: int, budget_objects: int) -> list[Segment]:
    """Segments to audit this run, within the budget."""
    picked: list[Segment] = []
    used = 0

    def take(rows) -> None:
        nonlocal used
        for r in rows:
            if len(picked) >= budget_objects:
                return
            if used + r.size > budget_bytes and picked:
                continue  # try smaller ones; the first always fits so a run is never empty
            picked.append(r)
            used += r.size

    half = max(1, budget_objects // 2)
    with db_errors(), Session(engine, expire_on_commit=False) as s:
        take(s.exec(select(Segment).where(Segment.status == "stored", Segment.verified_ms == None)  # noqa: E711
                    .order_by(col(Segment.start_ms).desc()).limit(half)))
        ids = [p.id for p in picked]
        q = select(Segment).where(Segment.status == "stored")
        if ids:
            q = q.where(col(Segment.id).not_in(ids))
        # rolling: least recently verified (never verified first), random among equals
        take(s.exec(q.order_by(func.coalesce(Segment.verified_ms, 0), func.random())
                    .limit(max(0, budget_objects - len(picked)) * 2)))
    return picked


def sha256_of(store: ObjectStore, key: str, version_id: str) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with store.open(key, version_id) as body:
        for chunk in body.stream(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


@exclusive("integrity")
def run_integrity(store: ObjectStore, engine: Engine, clock: Clock, *, budget_bytes: int = 2 << 30,
                  budget_objects: int = 1000, actor: str = "scheduler") -> JobResult:
    with JobRecorder(engine, clock, "integrity", actor=actor) as run:
        checked = ok = hashed_bytes = 0
        good: list[int] = []
        for seg in pick(engine, budget_bytes, budget_objects):
            checked += 1
            where = dict(camera_id=seg.camera_id, segment_id=seg.id, key=seg.key, version_id=seg.version_id)
            try:
                digest, size = sha256_of(store, seg.key, seg.version_id)
            except ObjectNotFoundError:
                run.finding("missing", detail="indexed version is not in storage", **where)
                continue
            hashed_bytes += size
            intact = True
            if digest != seg.sha256 or size != seg.size:
                intact = False
                run.finding("altered", detail=f"stored bytes hash to {digest} ({size} bytes); the index recorded "
                                              f"{seg.sha256} ({seg.size} bytes)", **where)
            newer = [v for v in store.list_versions(seg.key)
                     if v.key == seg.key and v.version_id != seg.version_id and v.is_latest]
            if newer:
                intact = False
                v = newer[0]
                run.finding("altered", detail=f"key rewritten: version {v.version_id} "
                                              f"({'delete marker' if v.is_delete_marker else f'{v.size} bytes'}, "
                                              f"{v.last_modified}) now shadows the indexed version", **where)
            if intact:
                ok += 1
                good.append(seg.id)
        mark_checked(engine, good, "verified_ms", utc_ms(clock.now()))
        return run.finish(run.status(), {"checked": checked, "ok": ok, "hashed_bytes": hashed_bytes,
                                         "budget_bytes": budget_bytes, "budget_objects": budget_objects})
