"""The coverage rollup's lock columns (:mod:`index.coverage`, invariant 5): the lock
arithmetic of the stored segments ending in a UTC day, for the monthly compliance report,
and dropping the days a lock verification changes, in the verifying transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, delete, func, select

from index.models import Camera, CoverageDay, Segment
from index.queries import MAX_SEGMENT_MS
from labwitness.clock import DAY_MS


@dataclass(frozen=True)
class LockDay:
    """The lock arithmetic of the stored segments ending in one UTC day (invariant 5)."""

    segments: int = 0
    recorded_ms: int = 0
    verified: int = 0
    missing_retain: int = 0
    not_compliance: int = 0
    min_margin_ms: int | None = None  # least retain_until - end
    min_until_ms: int | None = None  # least retain_until



def lock_aggregates(seg) -> list:
    """The lock arithmetic's aggregate columns over ``seg`` rows, in :class:`LockDay` order
    (the compliance report sums the same over its live edges)."""
    return [func.count(), func.sum(seg.c.end_ms - seg.c.start_ms), func.count(seg.c.lock_verified_ms),
            func.sum(case((seg.c.retain_until_ms.is_(None), 1), else_=0)),
            func.sum(case((seg.c.lock_mode == "COMPLIANCE", 0), else_=1)),
            func.min(seg.c.retain_until_ms - seg.c.end_ms), func.min(seg.c.retain_until_ms)]


def lock_day(row) -> LockDay:
    n, rec, verified, missing, not_comp, margin, until = row
    return LockDay(int(n or 0), int(rec or 0), int(verified or 0), int(missing or 0), int(not_comp or 0),
                   None if margin is None else int(margin), None if until is None else int(until))


def _lock_days(conn, camera_id: str, lo: int, hi: int) -> dict[int, LockDay]:
    """Per UTC day in [lo, hi): the lock arithmetic of the stored segments ending in it (invariant 5)."""
    seg = Segment.__table__
    day = (seg.c.end_ms // DAY_MS) * DAY_MS
    rows = conn.execute(
        select(day.label("day"), *lock_aggregates(seg))
        .where(seg.c.camera_id == camera_id, seg.c.start_ms > lo - MAX_SEGMENT_MS, seg.c.start_ms < hi,
               seg.c.end_ms >= lo, seg.c.end_ms < hi, seg.c.end_ms > seg.c.start_ms, seg.c.status == "stored")
        .group_by(day)).all()
    return {int(r[0]): lock_day(r[1:]) for r in rows}


def _lock_cameras(conn, cams: list[str]) -> None:
    """Lock these cameras' registry rows until the transaction ends (PostgreSQL; SQLite has one
    writer at a time anyway and renders no FOR UPDATE)."""
    if cams and conn.dialect.name == "postgresql":
        c = Camera.__table__
        conn.execute(select(c.c.id).where(c.c.id.in_(sorted(set(cams)))).order_by(c.c.id).with_for_update()).all()


def invalidate_segments(conn, segment_ids: list[int]) -> None:
    """Inside the transaction that changes these segments' lock columns (lock verification):
    lock their cameras' rows, then drop the rolled-up days they end in (invariant 5).  Call it
    before the change, so a refresh that waited on the lock reads the change."""
    if not segment_ids:
        return
    seg, cov = Segment.__table__, CoverageDay.__table__
    day = (seg.c.end_ms // DAY_MS) * DAY_MS
    days: set[tuple[str, int]] = set()
    for i in range(0, len(segment_ids), 1000):
        days |= {(c, int(d)) for c, d in conn.execute(select(seg.c.camera_id, day).distinct()
                                                       .where(seg.c.id.in_(segment_ids[i:i + 1000])))}
    _lock_cameras(conn, [c for c, _ in days])
    for cam, d in sorted(days):
        conn.execute(delete(cov).where(cov.c.camera_id == cam, cov.c.day_ms == d))
