"""Recorded time and bytes per camera over long windows, fast.

Health asks "how much of the last 183 days did each camera record?" — over a
full six-month index that is 16.8 M segment rows for 64 cameras, far too many
to sum on every check.  Closed days (older than ``open_days``) are rolled up
once into ``coverage_day``; open days and the partial edges of a window are
summed live from ``segment``.

Invariants:
1. A ``coverage_day`` row equals the sum over the stored segments of that
   camera clipped to that UTC day, as of ``computed_ms``.
2. Days are only rolled up once closed (default: before today, UTC), so
   normal recording never touches a rolled-up day; the few segments of
   yesterday still in the spool at midnight are caught by invariant 3.
3. A segment indexed later for a closed day (spool drained after a long
   outage, reconcile re-indexing an orphan object) is found through the
   segment-id watermark and its day is recomputed.  The watermark trails by
   one refresh, so a row whose id was taken before a refresh but committed
   after it is still seen by the next one.
4. Whoever deletes segment rows (the expiry sweep) calls :meth:`invalidate`
   for their days in the same run.
5. A row's ``lock_*`` columns (the compliance report's lock arithmetic, migration 0016)
   equal the same over the stored segments that *end* in that day.  They change when a
   segment's lock is verified later: :func:`invalidate_segments` drops those days in the
   verifying transaction, which locks the cameras' rows first, as a refresh does around
   reading and writing a camera's days (so no refresh writes a day it read before the
   verification).  A day whose segments end in the next, still open day leaves those to
   the next day's row (the late-segment check drops both days, invariant 3).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import and_, case, delete, func, insert, literal, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from index.coverage_locks import LockDay, _lock_cameras, _lock_days
from index.joblock import job_lock
from index.models import Camera, CoverageDay, IndexMeta, Segment
from index.queries import MAX_SEGMENT_MS, db_guarded
from index.segment_runs import settle as settle_runs
from labwitness.clock import DAY_MS
from labwitness.errors import JobRefusedError

_REFRESH_LOCK = threading.Lock()
LOCK = "coverage"  # the job lock of the rollup (index.joblock), one refresh at a time everywhere
_SEEN, _CHECKED = "coverage_seen_segment_id", "coverage_checked_segment_id"


@dataclass(frozen=True)
class Totals:
    recorded_ms: int = 0
    bytes: int = 0
    segments: int = 0

    def __add__(self, o: "Totals") -> "Totals":
        return Totals(self.recorded_ms + o.recorded_ms, self.bytes + o.bytes, self.segments + o.segments)


def day_of(ms: int) -> int:
    return ms // DAY_MS * DAY_MS


class CoverageStore:
    def __init__(self, engine: Engine, now_ms: Callable[[], int], open_days: int = 1) -> None:
        self.engine = engine
        self.now_ms = now_ms
        self.open_days = open_days

    def first_open_day(self) -> int:
        """The first day not rolled up (days before it are closed)."""
        return day_of(self.now_ms()) - (self.open_days - 1) * DAY_MS

    # -- maintenance ----------------------------------------------------------
    def refresh(self, camera_ids: Iterable[str] | None = None) -> int:
        """Roll up every closed day not rolled up yet (and days that got late
        segments); returns how many camera-days were (re)computed.  Refreshes in
        this process take turns; across processes and nodes the ``coverage`` job lock
        (:mod:`index.joblock`) lets one run at a time: a refresh that finds another
        going (the scheduler of another jobs node, ``labwitness health``) returns 0 and
        leaves the work to it (``totals`` sums live what is not rolled up yet)."""
        with _REFRESH_LOCK:
            try:
                with job_lock(self.engine, LOCK):
                    return self._refresh(camera_ids)
            except JobRefusedError:
                return 0
            except sa_exc.IntegrityError:  # a refresh of a version without the lock rolled the same days up first
                return 0

    @db_guarded
    def _refresh(self, camera_ids: Iterable[str] | None = None) -> int:
        # Short write transactions (one per camera): on SQLite the uploader's index
        # writes wait for ours, and a first rollup of six months takes seconds.
        seg, cov = Segment.__table__, CoverageDay.__table__
        with self.engine.begin() as conn:  # runs a node of the previous release left unsettled (index.segment_runs)
            settle_runs(conn)
        first_open = self.first_open_day()
        done = 0
        with self.engine.begin() as conn:
            meta = dict(conn.execute(select(IndexMeta.__table__.c.key, IndexMeta.__table__.c.value)
                                     .where(IndexMeta.__table__.c.key.in_([_SEEN, _CHECKED]))).all())
            checked = int(meta.get(_CHECKED, "0") or 0)
            max_id = conn.execute(select(func.max(seg.c.id))).scalar() or 0
            # 3. late segments of closed days: recompute those days (nothing is rolled up before the first refresh)
            if checked:
                late_day = (seg.c.start_ms // DAY_MS) * DAY_MS
                late = conn.execute(select(seg.c.camera_id, late_day).distinct()
                                    .where(seg.c.id > checked, seg.c.start_ms < first_open)).all()
                for cam, d in late:  # a late segment may spill into the next day too
                    conn.execute(delete(cov).where(cov.c.camera_id == cam, cov.c.day_ms >= int(d),
                                                   cov.c.day_ms <= int(d) + DAY_MS))
            # what each camera has rolled up, in one statement: (days, first, last)
            rolled = {c: (int(n), int(lo), int(hi)) for c, n, lo, hi in conn.execute(
                select(cov.c.camera_id, func.count(), func.min(cov.c.day_ms), func.max(cov.c.day_ms))
                .group_by(cov.c.camera_id))}
            # the registered cameras and those known only to the rollup (removed ones)
            cams = set(camera_ids) if camera_ids is not None else (
                set(conn.execute(select(Camera.__table__.c.id)).scalars()) | set(rolled))
            firsts = _first_starts(conn, sorted(cams))
        for cam in sorted(cams):
            first = firsts.get(cam)
            if first is None:
                continue
            # the steady state (nothing new for this camera) costs no statement: health calls this per report
            if _steady_missing(day_of(first), first_open, rolled.get(cam)) == []:
                continue
            # one short transaction per camera, its registry row locked first (invariant 5: a lock
            # verification of its segments waits, or is seen by the reads)
            with self.engine.begin() as conn:
                _lock_cameras(conn, [cam])
                missing = _missing_days(conn, cam, day_of(first), first_open, rolled.get(cam))
                runs = [(lo, hi, _day_sums(conn, cam, lo, hi), _lock_days(conn, cam, lo, hi))
                        for lo, hi in _runs(missing)]
                now = self.now_ms()
                for lo, hi, rows, locks in runs:
                    conn.execute(insert(cov), [_row(cam, d, rows.get(d, Totals()), locks.get(d, LockDay()), now)
                                               for d in range(lo, hi, DAY_MS)])
                    done += (hi - lo) // DAY_MS
        checked_now, seen_now = str(int(meta.get(_SEEN, "0") or 0)), str(max_id)
        # nothing indexed since the last two refreshes: the watermarks stay as they are, and the
        # refresh health runs on every report writes (and waits for a commit) nothing
        if (meta.get(_CHECKED), meta.get(_SEEN)) != (checked_now, seen_now):
            with self.engine.begin() as conn:
                _set_meta(conn, _CHECKED, checked_now)
                _set_meta(conn, _SEEN, seen_now)
        return done

    @db_guarded
    def invalidate(self, camera_id: str, start_ms: int, end_ms: int) -> None:
        """Forget the rolled-up days [start, end] of a camera (after deleting rows there)."""
        cov = CoverageDay.__table__
        with self.engine.begin() as conn:
            conn.execute(delete(cov).where(cov.c.camera_id == camera_id, cov.c.day_ms >= day_of(start_ms),
                                           cov.c.day_ms <= day_of(end_ms)))

    # -- reads ----------------------------------------------------------------
    @db_guarded
    def totals(self, camera_ids: list[str], start_ms: int, end_ms: int,
               firsts: dict[str, int | None] | None = None, memo: dict | None = None) -> dict[str, Totals]:
        """Recorded ms (clipped to the window), bytes and segments (counted where they
        start) per camera over [start, end): rolled-up closed days inside the window,
        the edges and open days live.  A camera whose rollup is incomplete (not
        refreshed yet) is summed live over the whole window: slower, never wrong.
        ``firsts``: each camera's oldest segment start if the caller has it (:meth:`oldest`).
        ``memo``: a dict the caller keeps for several windows at the same "now" (health's 24 h,
        7 d, 183 d and stored bytes): the live ranges are cut at the first open day and at now,
        so every window's open part is the same range and is summed once (a range's sums are
        the sums of its parts: recorded time is clipped, bytes and count go where a segment starts)."""
        out = {c: Totals() for c in camera_ids}
        if not camera_ids or end_ms <= start_ms:
            return out
        cov, seg = CoverageDay.__table__, Segment.__table__
        first_full = -(-start_ms // DAY_MS) * DAY_MS  # first day boundary at or after start
        last_full = min(day_of(end_ms), self.first_open_day())  # rollups may cover [first_full, last_full)
        with self.engine.connect() as conn:
            complete: set[str] = set()
            if last_full > first_full:
                rolled = {cam: (n, rec, by, segs) for cam, n, rec, by, segs in conn.execute(
                    select(cov.c.camera_id, func.count(), func.sum(cov.c.recorded_ms), func.sum(cov.c.bytes),
                           func.sum(cov.c.segments))
                    .where(cov.c.camera_id.in_(camera_ids), cov.c.day_ms >= first_full, cov.c.day_ms < last_full)
                    .group_by(cov.c.camera_id))}
                for cam in camera_ids:
                    # days before a camera's first footage have no rollup row: they are zero
                    first = firsts[cam] if firsts is not None and cam in firsts else conn.execute(
                        select(func.min(seg.c.start_ms)).where(seg.c.camera_id == cam)).scalar()
                    if first is None:
                        complete.add(cam)
                        continue
                    want = max(0, (last_full - max(first_full, day_of(first))) // DAY_MS)
                    n, rec, by, segs = rolled.get(cam, (0, 0, 0, 0))
                    if n == want:
                        complete.add(cam)
                        out[cam] = Totals(int(rec or 0), int(by or 0), int(segs or 0))
            partial = [c for c in camera_ids if c not in complete]
            if partial:
                out.update(_window_sums(conn, partial, start_ms, end_ms))
            have = [c for c in camera_ids if c in complete]
            ranges = [(start_ms, first_full), (last_full, end_ms)] if last_full > first_full else [(start_ms, end_ms)]
            if memo is not None:
                ranges = _cut(ranges, (self.first_open_day(), self.now_ms()))
            for lo, hi in ranges:
                if have and hi > lo:
                    key = (tuple(have), lo, hi)
                    sums = memo.get(key) if memo is not None else None
                    if sums is None:
                        sums = _window_sums(conn, have, lo, hi)
                        if memo is not None:
                            memo[key] = sums
                    for cam, t in sums.items():
                        out[cam] = out[cam] + t
        return out

    @db_guarded
    def oldest(self, camera_ids: list[str]) -> dict[str, int | None]:
        """Start of each camera's oldest stored segment (an index range scan each)."""
        seg = Segment.__table__
        with self.engine.connect() as conn:
            return {c: conn.execute(select(func.min(seg.c.start_ms)).where(seg.c.camera_id == c, seg.c.status == "stored")).scalar()
                    for c in camera_ids}

    @db_guarded
    def recent_rates(self, camera_ids: list[str], span_ms: int = DAY_MS) -> dict[str, tuple[int, int]]:
        """Per camera with stored footage: (bytes, media ms) of its segments that start
        within ``span_ms`` before its newest one, i.e. what it really writes per second
        of recording, known from its first segment on (and still known for a camera
        that has stopped).  Two index range scans per camera."""
        seg = Segment.__table__
        out: dict[str, tuple[int, int]] = {}
        with self.engine.connect() as conn:
            for cam in camera_ids:
                last = conn.execute(select(func.max(seg.c.start_ms))
                                    .where(seg.c.camera_id == cam, seg.c.status == "stored")).scalar()
                if last is None:
                    continue
                size, media = conn.execute(
                    select(func.sum(seg.c.size), func.sum(seg.c.media_duration_ms))
                    .where(seg.c.camera_id == cam, seg.c.start_ms > last - span_ms, seg.c.start_ms <= last,
                           seg.c.status == "stored")).one()
                out[cam] = (int(size or 0), int(media or 0))
        return out

    def stored_bytes(self, camera_ids: list[str], firsts: dict[str, int | None] | None = None,
                     memo: dict | None = None) -> int:
        """All stored footage of these cameras (rolled-up days plus the rest, live); ``memo``: :meth:`totals`."""
        firsts = firsts if firsts is not None else self.oldest(camera_ids)
        known = [t for t in firsts.values() if t is not None]
        if not known:
            return 0
        return sum(t.bytes for t in self.totals(camera_ids, min(known), self.now_ms() + DAY_MS, firsts, memo).values())


def _cut(ranges: list[tuple[int, int]], points) -> list[tuple[int, int]]:
    """The ranges cut at every point strictly inside one."""
    out = []
    for lo, hi in ranges:
        for p in sorted(points):
            if lo < p < hi:
                out.append((lo, p))
                lo = p
        out.append((lo, hi))
    return out


def _first_starts(conn, cams: list[str]) -> dict[str, int | None]:
    """Camera -> start of its first segment (any status), in one statement for the registered
    cameras (each an index lookup inside the database, so partitions are read in order and the
    scan stops at the first row) and one each for cameras known only to the rollup (removed ones)."""
    seg, cam = Segment.__table__, Camera.__table__
    first = select(func.min(seg.c.start_ms)).where(seg.c.camera_id == cam.c.id).scalar_subquery()
    got: dict[str, int | None] = dict(conn.execute(select(cam.c.id, first).where(cam.c.id.in_(cams))).all()) if cams else {}
    for c in cams:
        if c not in got:
            got[c] = conn.execute(select(func.min(seg.c.start_ms)).where(seg.c.camera_id == c)).scalar()
    return got


def _steady_missing(first_day: int, first_open: int, rolled: tuple[int, int, int] | None) -> list[int] | None:
    """The missing days of a camera whose rollup is one unbroken run from its first day (the
    steady state: a refresh a day adds one day at the end), known without reading anything;
    None when the rollup has holes (days dropped by late segments or the sweep)."""
    if rolled is not None:
        n, lo, hi = rolled
        if lo <= first_day and n == (hi - lo) // DAY_MS + 1:
            return list(range(max(hi + DAY_MS, first_day), first_open, DAY_MS))
    return None


def _missing_days(conn, cam: str, first_day: int, first_open: int, rolled: tuple[int, int, int] | None) -> list[int]:
    """Closed days of ``cam`` from its first footage on without a rollup row.  Incremental:
    in the steady state (:func:`_steady_missing`) only the days after the rolled run are
    missing and nothing is read; otherwise the camera's rolled days are read."""
    steady = _steady_missing(first_day, first_open, rolled)
    if steady is not None:
        return steady
    cov = CoverageDay.__table__
    have = set(conn.execute(select(cov.c.day_ms).where(cov.c.camera_id == cam)).scalars())
    return [d for d in range(first_day, first_open, DAY_MS) if d not in have]


def _runs(days: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of day starts as [lo, hi) ranges."""
    out: list[tuple[int, int]] = []
    for d in days:
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], d + DAY_MS)
        else:
            out.append((d, d + DAY_MS))
    return out


def _clipped(seg, lo, hi):
    """Milliseconds of a segment inside [lo, hi), portable SQL (no LEAST/GREATEST in SQLite)."""
    s = case((seg.c.start_ms < lo, lo), else_=seg.c.start_ms)
    e = case((seg.c.end_ms > hi, hi), else_=seg.c.end_ms)
    return e - s


def _window_sums(conn, camera_ids: list[str], lo: int, hi: int) -> dict[str, Totals]:
    seg = Segment.__table__
    lo_l, hi_l = literal(lo), literal(hi)
    rows = conn.execute(
        select(seg.c.camera_id, func.sum(_clipped(seg, lo_l, hi_l)),
               func.sum(case((seg.c.start_ms >= lo, seg.c.size), else_=0)),
               func.sum(case((seg.c.start_ms >= lo, 1), else_=0)))
        .where(seg.c.camera_id.in_(camera_ids), seg.c.start_ms < hi, seg.c.start_ms > lo - MAX_SEGMENT_MS,
               seg.c.end_ms > lo, seg.c.status == "stored")
        .group_by(seg.c.camera_id)).all()
    return {cam: Totals(int(rec or 0), int(by or 0), int(n or 0)) for cam, rec, by, n in rows}


def _day_sums(conn, camera_id: str, lo: int, hi: int) -> dict[int, Totals]:
    """Per UTC day in [lo, hi): recorded ms clipped to the day, bytes and count
    (a segment's bytes and count go to the day it starts in)."""
    seg = Segment.__table__
    day = (seg.c.start_ms // DAY_MS) * DAY_MS  # integer division on both databases
    nxt = day + DAY_MS
    own = case((seg.c.end_ms > nxt, nxt), else_=seg.c.end_ms) - seg.c.start_ms
    spill = case((seg.c.end_ms > nxt, seg.c.end_ms - nxt), else_=0)
    rows = conn.execute(
        select(day.label("day"), func.sum(own), func.sum(spill), func.sum(seg.c.size), func.count())
        .where(and_(seg.c.camera_id == camera_id, seg.c.start_ms >= lo - MAX_SEGMENT_MS, seg.c.start_ms < hi,
                    seg.c.status == "stored"))
        .group_by(day)).all()
    out: dict[int, Totals] = {}
    for d, own_ms, spill_ms, by, n in rows:
        d = int(d)
        if lo <= d < hi:
            out[d] = out.get(d, Totals()) + Totals(int(own_ms or 0), int(by or 0), int(n))
        if spill_ms and lo <= d + DAY_MS < hi:
            out[d + DAY_MS] = out.get(d + DAY_MS, Totals()) + Totals(int(spill_ms), 0, 0)
    return out


def _row(cam: str, day: int, t: Totals, lk: LockDay, now: int) -> dict:
    return {"camera_id": cam, "day_ms": day, "recorded_ms": t.recorded_ms, "bytes": t.bytes, "segments": t.segments,
            "computed_ms": now, "lock_segments": lk.segments, "lock_recorded_ms": lk.recorded_ms,
            "lock_verified": lk.verified, "lock_missing_retain": lk.missing_retain,
            "lock_not_compliance": lk.not_compliance, "lock_min_margin_ms": lk.min_margin_ms,
            "lock_min_until_ms": lk.min_until_ms}


def unrolled_cameras(conn, start_ms: int, end_ms: int) -> set[str]:
    """Cameras with a segment starting in [start, end) that the rollup may not hold yet: indexed
    after the last refresh's check (invariant 3: its watermark trails by one refresh).  Their
    rolled-up days there may be stale until the next refresh; a reader that must be exact reads
    those cameras live.  One range scan of the primary key (ids are handed out in order)."""
    seg, meta = Segment.__table__, IndexMeta.__table__
    checked = int(conn.execute(select(meta.c.value).where(meta.c.key == _CHECKED)).scalar() or 0)
    return set(conn.execute(select(seg.c.camera_id).distinct()
                            .where(seg.c.id > checked, seg.c.start_ms >= start_ms, seg.c.start_ms < end_ms)).scalars())


def _set_meta(conn, key: str, value: str) -> None:
    t = IndexMeta.__table__
    if conn.execute(select(t.c.key).where(t.c.key == key)).first() is None:
        conn.execute(insert(t).values(key=key, value=value))
    else:
        conn.execute(t.update().where(t.c.key == key).values(value=value))
