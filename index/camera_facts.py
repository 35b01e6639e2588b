"""Per-camera facts health needs, for all cameras in a constant number of statements.

Health over 256 cameras used to ask each camera on its own (oldest segment, newest
segment, recent write rate: ~4 round trips per camera, each planned over every month
partition of ``segment`` on PostgreSQL): 1.4-1.9 s.  Here each fact is one statement
for all cameras: a correlated subquery per camera row runs the same index lookup
inside the database (``ix_segment_camera_start``), so the cost is one plan and one
round trip, not one per camera.

"Newest" is looked for in the recent weeks first (:data:`RECENT_MS`, a constant
bound on ``start_ms``, so PostgreSQL prunes every older month's partition at plan
time); only cameras with nothing that recent (stopped long ago, never recorded) are
asked again without the bound, in one more statement.  The answers equal the
per-camera queries' (tests/test_health_grouped.py pins that on both databases).
"""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from index.models import Camera, Segment
from labwitness.clock import DAY_MS

#: newest footage is looked for within this long before "now" first (partition pruning)
RECENT_MS = 32 * DAY_MS


def _newest(col, since_ms: int | None):
    """Scalar subquery: ``col`` of the camera row's newest stored segment (by start)."""
    seg, cam = Segment.__table__, Camera.__table__
    q = select(col).where(seg.c.camera_id == cam.c.id, seg.c.status == "stored")
    if since_ms is not None:
        q = q.where(seg.c.start_ms >= since_ms)
    return q.order_by(seg.c.start_ms.desc()).limit(1).scalar_subquery()


def newest_segments(conn: Connection, camera_ids: list[str], now_ms: int) -> dict[str, tuple[int, int]]:
    """Camera -> (start, end) ms of its newest stored segment; cameras without one are left out.
    One statement, plus one for the cameras with nothing in the last :data:`RECENT_MS`."""
    seg, cam = Segment.__table__, Camera.__table__
    out: dict[str, tuple[int, int]] = {}
    rest = list(camera_ids)
    for since in (now_ms - RECENT_MS, None):
        if not rest:
            break
        rows = conn.execute(select(cam.c.id, _newest(seg.c.start_ms, since), _newest(seg.c.end_ms, since))
                            .where(cam.c.id.in_(rest))).all()
        out.update({c: (int(s), int(e)) for c, s, e in rows if s is not None})
        rest = [c for c in rest if c not in out]
    return out


def oldest_starts(conn: Connection, camera_ids: list[str]) -> dict[str, int | None]:
    """Camera -> start of its oldest stored segment (None: none), as
    :meth:`index.coverage.CoverageStore.oldest` answers it, in one statement."""
    seg, cam = Segment.__table__, Camera.__table__
    if not camera_ids:
        return {}
    first = (select(func.min(seg.c.start_ms)).where(seg.c.camera_id == cam.c.id, seg.c.status == "stored")
             .scalar_subquery())
    got = {c: (int(t) if t is not None else None)
           for c, t in conn.execute(select(cam.c.id, first).where(cam.c.id.in_(camera_ids)))}
    return {c: got.get(c) for c in camera_ids}


def recent_rates(conn: Connection, newest: dict[str, tuple[int, int]], now_ms: int,
                 span_ms: int = DAY_MS) -> dict[str, tuple[int, int]]:
    """Camera -> (bytes, media ms) of its stored segments starting within ``span_ms`` before
    its newest one (``newest``: :func:`newest_segments`), as
    :meth:`index.coverage.CoverageStore.recent_rates` answers it.  One statement for the
    cameras that recorded recently (bounded to the months they span), one for the rest."""
    seg, cam = Segment.__table__, Camera.__table__
    out: dict[str, tuple[int, int]] = {}
    recent = [c for c, (s, _e) in newest.items() if s >= now_ms - RECENT_MS]
    old = [c for c in newest if c not in set(recent)]
    for group, since in ((recent, now_ms - RECENT_MS), (old, None)):
        if not group:
            continue
        last = select(cam.c.id.label("cam"), _newest(seg.c.start_ms, since).label("last")) \
            .where(cam.c.id.in_(group)).subquery()
        lo = min(newest[c][0] for c in group) - span_ms
        hi = max(newest[c][0] for c in group)
        rows = conn.execute(
            select(last.c.cam, func.sum(seg.c.size), func.sum(seg.c.media_duration_ms))
            .select_from(last.join(seg, and_(seg.c.camera_id == last.c.cam, seg.c.start_ms > last.c.last - span_ms,
                                             seg.c.start_ms <= last.c.last)))
            .where(seg.c.status == "stored", seg.c.start_ms > lo, seg.c.start_ms <= hi)  # constants: pruning
            .group_by(last.c.cam)).all()
        out.update({c: (int(size or 0), int(media or 0)) for c, size, media in rows})
    return {c: out.get(c, (0, 0)) for c in newest}


def segment_cameras(conn: Connection) -> list[str]:
    """Every camera id with a row in ``segment`` (any status, registered or not), by a loose
    index scan: one ``min(camera_id) > previous`` probe of ``ix_segment_camera_start`` per
    camera (per partition on PostgreSQL), never a scan of the rows."""
    seg = Segment.__table__
    first = select(func.min(seg.c.camera_id).label("id")).cte("cams", recursive=True)
    nxt = select(select(func.min(seg.c.camera_id)).where(seg.c.camera_id > first.c.id).scalar_subquery()) \
        .where(first.c.id.is_not(None))
    cams = first.union_all(nxt)
    return [c for c in conn.execute(select(cams.c.id)).scalars() if c is not None]


def oldest_stored(conn: Connection, camera_ids: list[str]) -> dict[str, int]:
    """Camera -> start of its oldest stored segment, cameras without one left out: the registered
    ones in one statement (:func:`oldest_starts`), any others (removed from the registry) one each."""
    seg = Segment.__table__
    got = {c: t for c, t in oldest_starts(conn, list(camera_ids)).items() if t is not None}
    registered = set(conn.execute(select(Camera.__table__.c.id)).scalars())
    for c in camera_ids:
        if c not in registered:
            t = conn.execute(select(func.min(seg.c.start_ms)).where(seg.c.camera_id == c, seg.c.status == "stored")).scalar()
            if t is not None:
                got[c] = int(t)
    return got
