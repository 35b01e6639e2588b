"""Queries and writes on the index.

Writes are idempotent so the spool can replay them after any crash:
a segment row is keyed by (key, version_id); a gap by (camera, start, reason).
Database faults are raised as :class:`IndexUnavailableError` so callers can
keep the data in the spool and retry.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.db import read_only
from index.models import Camera, CameraContentState, CameraLease, Gap, Segment
from index.tiling import NOTHING_SPOOLED, Part, SpoolState, prefer_newer_epoch, uncovered
from labwitness.errors import IndexUnavailableError, NotFoundError
from labwitness.segment_limits import MAX_SEGMENT_MS  # the bound every query of the index relies on


@dataclass(frozen=True)
class Footage:
    camera_id: str
    start_ms: int
    end_ms: int
    segments: Sequence[Segment]
    gaps: Sequence[Gap]
    registered_ms: int | None = None  # when the camera was registered (None: not in the registry)

    @property
    def covered_ms(self) -> int:
        """Milliseconds of the window covered by stored segments (overlaps merged)."""
        return covered_ms(sorted((s.start_ms, s.end_ms) for s in self.segments), self.start_ms, self.end_ms)

    @property
    def coverage(self) -> float:
        span = self.end_ms - self.start_ms
        return self.covered_ms / span if span > 0 else 0.0

    def uncovered(self, now_ms: int, spool: SpoolState = NOTHING_SPOOLED) -> list[Part]:
        """Every part of the window without stored footage, with its reason (index.tiling)."""
        return uncovered(self.start_ms, self.end_ms, ((s.start_ms, s.end_ms) for s in self.segments),
                         gaps=[(g.start_ms, g.end_ms, g.reason, g.detail) for g in self.gaps],
                         registered_ms=self.registered_ms, spool=spool, now_ms=now_ms)


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    sample_ms: int | None  # when the sample was taken (None: not recorded)
    source: str = ""  # "sub": the camera's sub stream; "main": the stored main stream ("": not recorded)


@contextmanager
def db_errors() -> Iterator[None]:
    """Database faults as the one error type callers handle (they keep data in the
    spool, report health critical, or exit "could not run")."""
    try:
        yield
    except sa_exc.OperationalError as e:
        raise IndexUnavailableError(f"索引数据库不可用 / index database unavailable: {e.orig!s}"[:500]) from e
    except sa_exc.InterfaceError as e:
        raise IndexUnavailableError(f"索引数据库不可用 / index database unavailable: {e!s}"[:500]) from e


@contextmanager
def driver_errors(dialect, sql: str, params) -> Iterator[None]:
    """A driver's own error on a DB-API cursor (statements run past SQLAlchemy's execution:
    the report's SQL text, the restore's COPY) as SQLAlchemy's wrapper of it, as every other
    statement raises it: so a database that stops answering, a lock or statement timeout, or
    SQLite's "database is locked" reach :func:`db_errors` and become IndexUnavailableError."""
    dbapi = dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as e:
        raise sa_exc.DBAPIError.instance(sql, params, e, dbapi.Error) from e


def covered_ms(spans: Iterable[tuple[int, int]], start_ms: int, end_ms: int) -> int:
    """Milliseconds of [start, end) covered by ``spans`` (sorted by start; overlaps merged)."""
    total, cursor = 0, start_ms
    for lo, hi in spans:
        lo, hi = max(lo, cursor), min(hi, end_ms)
        if hi > lo:
            total += hi - lo
            cursor = hi
    return total


def db_guarded(fn):
    """Decorator for an index method: a database that does not answer becomes
    :class:`IndexUnavailableError` (via :func:`db_errors`), for every index module."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        with db_errors():
            return fn(*a, **kw)

    return wrapper


class IndexStore:
    """All index reads and writes; one instance per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads = read_only(engine)  # requests that only read: no transaction block on PostgreSQL

    @db_guarded
    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # -- segments and gaps ----------------------------------------------------
    @db_guarded
    def add_segment(self, seg: Segment) -> Segment:
        """Insert unless (key, version_id) is already indexed; returns the row."""
        with Session(self.engine, expire_on_commit=False) as s:
            found = s.exec(select(Segment).where(Segment.key == seg.key, Segment.version_id == seg.version_id)).first()
            if found is not None:
                return found
            s.add(seg)
            try:
                s.commit()
            except sa_exc.IntegrityError:  # a concurrent replay won the race
                s.rollback()
                return s.exec(select(Segment).where(Segment.key == seg.key, Segment.version_id == seg.version_id)).one()
            return seg

    @db_guarded
    def add_gap(self, gap: Gap) -> Gap:
        """Insert or grow a gap.  Fenced by the writer's lease epoch (docs/cluster.md): a gap of an
        older epoch than the camera's lease ends where the newer epoch was claimed (never covering
        the new holder's time) and never changes a gap written under a newer epoch."""
        with Session(self.engine, expire_on_commit=False) as s:
            if gap.epoch is not None:
                lease = s.get(CameraLease, gap.camera_id)
                if lease is not None and lease.epoch > gap.epoch:
                    if gap.start_ms >= lease.claimed_at_ms:
                        return gap  # refused: the stale holder's time after the takeover is not its to describe
                    gap.end_ms = min(gap.end_ms, lease.claimed_at_ms)
            q = select(Gap).where(Gap.camera_id == gap.camera_id, Gap.start_ms == gap.start_ms, Gap.reason == gap.reason)
            found = s.exec(q).first()
            if found is not None:
                if found.epoch is not None and (gap.epoch or 0) < found.epoch:
                    return found  # a newer epoch's gap: a stale writer never overwrites it
                if gap.end_ms > found.end_ms:  # a gap re-reported with a later end grows
                    found.end_ms = gap.end_ms
                    found.detail = gap.detail
                    found.seal_seq = None  # sealed again as it is now
                    s.add(found)
                    s.commit()
                return found
            s.add(gap)
            try:
                s.commit()
            except sa_exc.IntegrityError:
                s.rollback()
                return s.exec(q).one()
            return gap

    @db_guarded
    def segment(self, segment_id: int) -> Segment:
        with Session(self.engine, expire_on_commit=False) as s:
            seg = s.get(Segment, segment_id)
            if seg is None:
                raise NotFoundError(f"片段不存在 / segment {segment_id} not found")
            return seg

    @db_guarded
    def footage(self, camera_id: str, start_ms: int, end_ms: int) -> Footage:
        """Segments and gaps of one camera overlapping [start_ms, end_ms), and when
        the camera was registered (for :meth:`Footage.uncovered`)."""
        if end_ms <= start_ms:
            raise ValueError("end must be after start")
        seg_t, gap_t = Segment.__table__, Gap.__table__
        # Plain rows (attribute access by column name), not ORM entities: a report
        # can span thousands of segments, and entity construction would dominate.
        with self.reads.connect() as conn:
            # Bounded lower edge keeps this an index range scan: no segment is
            # longer than MAX_SEGMENT_MS, so one starting earlier cannot overlap.
            segs = conn.execute(
                sa_select(seg_t)
                .where(seg_t.c.camera_id == camera_id, seg_t.c.start_ms < end_ms,
                       seg_t.c.start_ms > start_ms - MAX_SEGMENT_MS, seg_t.c.end_ms > start_ms, seg_t.c.status == "stored")
                .order_by(seg_t.c.start_ms)
            ).all()
            gaps = conn.execute(
                sa_select(gap_t)
                .where(gap_t.c.camera_id == camera_id, gap_t.c.start_ms < end_ms, gap_t.c.end_ms > start_ms)
                .order_by(gap_t.c.start_ms)
            ).all()
            registered = conn.execute(sa_select(Camera.__table__.c.created_ms)
                                      .where(Camera.__table__.c.id == camera_id)).scalar()
        if any(s.epoch is not None for s in segs):  # a failover's overlap: the newer holder's footage (docs/cluster.md)
            segs = prefer_newer_epoch(segs, MAX_SEGMENT_MS)
        return Footage(camera_id, start_ms, end_ms, list(segs), list(gaps), registered)

    @db_guarded
    def latest_segment(self, camera_id: str) -> Segment | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.exec(
                select(Segment).where(Segment.camera_id == camera_id).order_by(col(Segment.start_ms).desc()).limit(1)
            ).first()

    @db_guarded
    def iter_segments(self, camera_id: str) -> Iterator[Segment]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield from s.exec(select(Segment).where(Segment.camera_id == camera_id).order_by(col(Segment.start_ms)))

    @db_guarded
    def gaps(self, camera_id: str) -> list[Gap]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(Gap).where(Gap.camera_id == camera_id).order_by(col(Gap.start_ms))))

    # -- the content-health job's thumbnails (retention.content_job writes them) -----
    @db_guarded
    def thumbnail(self, camera_id: str) -> Thumbnail | None:
        """The camera's latest content sample as a small JPEG, or None when it has none yet."""
        with Session(self.engine) as s:
            row = s.get(CameraContentState, camera_id)
            if row is None or not row.thumbnail_jpeg:
                return None
            return Thumbnail(row.thumbnail_jpeg, row.last_sample_ms, row.last_sample_source)

    @db_guarded
    def cameras_with_thumbnail(self) -> set[str]:
        with Session(self.engine) as s:
            return set(s.exec(select(CameraContentState.camera_id)
                              .where(col(CameraContentState.thumbnail_jpeg).is_not(None))))
