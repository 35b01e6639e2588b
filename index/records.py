"""Test records from the lab's core data upload modules, with every revision kept.

Linking records to footage is computed at query time (areas/equipment ->
cameras, record window -> segments), not materialised: a record may arrive
before, during or after its footage, and may be corrected later; a query-time
join can never be stale, and it costs one index range scan per camera.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Callable, Sequence

from sqlalchemy import or_
from sqlalchemy import exc as sa_exc
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.db import read_only
from index.models import Equipment, ExportPackage, Hold, Segment, TestRecord, TestRecordRevision
from index import report_sql
from index.queries import MAX_SEGMENT_MS, db_guarded
from index.tiling import NOTHING_SPOOLED, Part, SpoolView, merged_runs, spans_coverage, uncovered
from labwitness.errors import NotFoundError

_CONTENT = ("report_no", "commission_no", "project_name", "test_item", "sample_ids", "area_ids", "equipment_ids",
            "operator", "started_ms", "ended_ms")


def record_content(r: TestRecord) -> dict[str, Any]:
    d = {k: getattr(r, k) for k in _CONTENT}
    for k in ("sample_ids", "area_ids", "equipment_ids"):
        d[k] = json.loads(d[k])
    return d


def merge_windows(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching windows become one; separate ones stay separate (a 7-day
    and a 28-day cube test of one report must not become weeks of footage)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


@dataclass(frozen=True)
class WindowFootage:
    """One camera over one (merged) report window: clips as (segment_id, start_ms,
    end_ms, sha256) and recorded gaps as (start_ms, end_ms, reason), both in time
    order; ``tests``: the test windows themselves (no margins) inside it;
    ``parts``: every uncovered part of the window with its reason (index.tiling);
    ``runs``: the clips merged into runs inside the window (derived when not given).

    Paged (``RecordStore.report_footage(clip_page=N)``): ``clips`` holds only the
    first N clips, ``clips_total`` says how many the window has, and ``runs`` and
    ``run_segments`` come from the index itself, so every figure is that of the
    whole window; ``clips_total`` None means ``clips`` is complete."""

    camera_id: str
    start_ms: int
    end_ms: int
    clips: list[tuple[int, int, int, str]]
    gaps: list[tuple[int, int, str]]
    tests: list[tuple[int, int]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    runs: list[tuple[int, int]] | None = None
    clips_total: int | None = None
    run_segments: list[int] | None = None  # stored segments of positive length in each run

    def __post_init__(self) -> None:
        if self.runs is None:  # frozen: derived once here, then every figure reads the few runs
            object.__setattr__(self, "runs", merged_runs(((lo, hi) for _, lo, hi, _ in self.clips),
                                                         self.start_ms, self.end_ms))
        if self.clips_total is None:
            object.__setattr__(self, "clips_total", len(self.clips))
        if self.run_segments is None:
            object.__setattr__(self, "run_segments", _segments_per_run(self.clips, self.runs))

    @property
    def paged(self) -> bool:
        """Whether ``clips`` is only the first page of the window's clips."""
        return len(self.clips) < self.clips_total

    @property
    def covered_ms(self) -> int:
        return sum(hi - lo for lo, hi in self.runs)

    @property
    def coverage(self) -> float:
        """Share of the window with its margins covered by stored footage."""
        span = self.end_ms - self.start_ms
        return self.covered_ms / span if span > 0 else 0.0

    @property
    def test_coverage(self) -> float:
        """Share of the test windows themselves (started..ended) covered by stored footage."""
        return spans_coverage(self.runs, self.tests)


@dataclass(frozen=True)
class ReportFootage:
    records: list  # TestRecord-shaped rows, by start
    windows: list[WindowFootage] = field(default_factory=list)
    held: set[int] = field(default_factory=set)  # ids of the listed clips on legal hold for the report's exports


class RecordStore:
    def __init__(self, engine: Engine, now_ms: Callable[[], int], spool: SpoolView | None = None) -> None:
        self.engine = engine
        self.reads = read_only(engine)  # report reads: no transaction block on PostgreSQL (decision 58)
        self.now_ms = now_ms
        self.spool = spool  # what the recorder's spool holds, to explain footage not indexed yet

    @db_guarded
    def upsert(self, record_id: str, content: dict[str, Any], actor: str) -> tuple[TestRecord, bool, bool]:
        """Idempotent: (row, created, changed). A changed record gets a new revision."""
        stored = {k: (json.dumps(v, ensure_ascii=False) if k.endswith("_ids") else v) for k, v in content.items()}
        for attempt in range(3):
            with Session(self.engine, expire_on_commit=False) as s:
                cur = s.get(TestRecord, record_id)
                before = record_content(cur) if cur is not None else None
                if before == content:
                    return cur, False, False
                now = self.now_ms()
                if cur is None:
                    cur = TestRecord(record_id=record_id, revision=1, updated_ms=now, **stored)
                else:
                    for k, v in stored.items():
                        setattr(cur, k, v)
                    cur.revision += 1
                    cur.updated_ms = now
                s.add(cur)
                s.add(TestRecordRevision(record_id=record_id, revision=cur.revision, at_ms=now, actor=actor[:200],
                                         before=json.dumps(before, ensure_ascii=False) if before else None,
                                         after=json.dumps(content, ensure_ascii=False)))
                try:
                    s.commit()
                except sa_exc.IntegrityError:
                    continue  # a concurrent writer took this revision number: re-read and retry
                return cur, before is None, True
        raise sa_exc.OperationalError("upsert", {}, Exception("too many concurrent updates of one record"))

    @db_guarded
    def get(self, record_id: str) -> TestRecord:
        with Session(self.engine, expire_on_commit=False) as s:
            r = s.get(TestRecord, record_id)
            if r is None:
                raise NotFoundError(f"检测记录不存在 / test record {record_id!r} not found")
            return r

    @db_guarded
    def revisions(self, record_id: str) -> list[TestRecordRevision]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(TestRecordRevision).where(TestRecordRevision.record_id == record_id)
                               .order_by(col(TestRecordRevision.revision))))

    @db_guarded
    def by_report(self, report_no: str) -> list[TestRecord]:
        with Session(self.engine, expire_on_commit=False) as s:
            rows = list(s.exec(select(TestRecord).where(TestRecord.report_no == report_no).order_by(col(TestRecord.started_ms))))
        if not rows:
            raise NotFoundError(f"报告编号没有对应的检测记录 / no test record has report no. {report_no!r}")
        return rows

    @db_guarded
    def search(self, *, report_no: str = "", commission_no: str = "", sample_id: str = "", start_ms: int | None = None,
               end_ms: int | None = None, limit: int = 200) -> list[TestRecord]:
        """Records matching every given criterion (substring match on the numbers; a time
        range selects records whose test window overlaps it), newest first."""
        q = select(TestRecord)
        if report_no:
            q = q.where(col(TestRecord.report_no).contains(report_no, autoescape=True))
        if commission_no:
            q = q.where(col(TestRecord.commission_no).contains(commission_no, autoescape=True))
        if sample_id:
            q = q.where(col(TestRecord.sample_ids).contains(sample_id, autoescape=True))
        if start_ms is not None:
            q = q.where(TestRecord.ended_ms > start_ms)
        if end_ms is not None:
            q = q.where(TestRecord.started_ms < end_ms)
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(q.order_by(col(TestRecord.started_ms).desc()).limit(limit)))

    @db_guarded
    def unknown_refs(self, area_ids: list[str], equipment_ids: list[str]) -> tuple[list[str], list[str]]:
        from index.models import Area

        with Session(self.engine) as s:
            known_a = set(s.exec(select(Area.id).where(col(Area.id).in_(area_ids)))) if area_ids else set()
            known_e = set(s.exec(select(Equipment.id).where(col(Equipment.id).in_(equipment_ids)))) if equipment_ids else set()
        return [a for a in area_ids if a not in known_a], [e for e in equipment_ids if e not in known_e]

    @db_guarded
    def report_footage(self, report_no: str, margin_ms: int, *, holds: bool = True, footage: bool = True,
                       clip_page: int | None = None, clip_budget: int | None = None) -> ReportFootage:
        """Everything an inspector's "footage of this report" needs, on one connection
        in a fixed handful of statements: records (1), cameras of their areas and
        instruments with their registration times (1), then, paged, the runs, first
        clips and gaps of all windows and the holds (4, sent together on PostgreSQL);
        in full, per distinct window span the segments (1), and the gaps (1) and holds
        (1); the spool's state is read once per report.
        Only the columns shown are fetched, as plain rows: a week-long test has
        ~10 000 one-minute segments and ORM entities would dominate (bench/report_query).
        ``footage=False``: records and windows only (clips, gaps and parts left empty).

        ``clip_page=N``: the database merges each window's segments into runs (one
        row per run, not per segment) and returns only the first N clips of each
        window (more through :meth:`report_clips`): the cost then follows the runs,
        a handful per camera, not the thousands of segments of a long test
        (decision 48).  Coverage, gaps and runs are the same as without paging.
        ``clip_budget=B`` (with ``clip_page``): the first clips of the whole report are at
        most about B, shared evenly by its windows (at least one each): a report over 128
        camera windows lists a few clips of each, not 128 pages (decision 57)."""
        seg_t = Segment.__table__
        with self.reads.connect() as conn:
            records, camera_rows = report_sql.report_records(conn, report_no)
            if not records:
                raise NotFoundError(f"报告编号没有对应的检测记录 / no test record has report no. {report_no!r}")
            per_record = [(json.loads(r.area_ids), json.loads(r.equipment_ids)) for r in records]
            cams, created = _resolve_cameras(camera_rows, per_record)
            spans: dict[str, list[tuple[int, int]]] = {}
            tests: dict[str, list[tuple[int, int]]] = {}
            for r, cam_set in zip(records, cams, strict=True):
                for cam in cam_set:
                    spans.setdefault(cam, []).append((r.started_ms - margin_ms, r.ended_ms + margin_ms))
                    tests.setdefault(cam, []).append((r.started_ms, r.ended_ms))
            registered: dict[str, int] = {}
            spooled: dict = {}
            now_ms = self.now_ms()
            if footage and spans:
                registered = {c: created[c] for c in spans if c in created}
                # Read the spool before the index: a segment indexed (and released from the
                # spool) in between is then seen twice (the clip wins), never not at all.
                spooled = dict(self.spool.state(sorted(spans))) if self.spool is not None else {}
            # Most windows of a report are the same few spans on many cameras: one
            # statement per distinct span with camera_id IN (...), not one per camera.
            by_span: dict[tuple[int, int], list[str]] = {}
            for cam in sorted(spans):
                for span in merge_windows(spans[cam]):
                    by_span.setdefault(span, []).append(cam)
            clips: dict[tuple[str, int, int], list] = {}
            gaps: dict[tuple[str, int, int], list] = {}
            runs_of: dict[tuple[str, int, int], tuple[list, list[int], int]] = {}  # paged: (runs, segments per run, total)
            all_windows = [(cam, lo, hi) for (lo, hi), cams_here in by_span.items() for cam in cams_here]
            for w in all_windows:
                clips[w], gaps[w] = [], []
            if footage and clip_page is None:
                for (lo, hi), cams_here in by_span.items():
                    # Bounded lower edge keeps this an index range scan (see IndexStore.footage).
                    seg_rows = _dbapi_rows(conn,
                        sa_select(seg_t.c.camera_id, seg_t.c.id, seg_t.c.start_ms, seg_t.c.end_ms, seg_t.c.sha256)
                        .where(*_in_window(seg_t, cams_here, lo, hi))
                        .order_by(seg_t.c.camera_id, seg_t.c.start_ms, seg_t.c.id))  # the pages' order (report_clips)
                    for cam, rows in groupby(seg_rows, key=itemgetter(0)):
                        clips[(cam, lo, hi)] = [r[1:] for r in rows]
            held: set[int] | None = None
            if footage and clip_page is not None:  # all the report's windows at once (index.report_sql)
                if clip_budget is not None and all_windows:
                    clip_page = shared_page(clip_page, clip_budget, len(all_windows))
                runs_of, first, window_gaps, held = report_sql.report_windows(
                    conn, all_windows, clip_page, report_no if holds else None)
                clips.update(first)
                gaps.update(window_gaps)
            elif footage:
                gaps.update(report_sql.report_gaps(conn, all_windows))
            windows = []
            for cam, lo, hi in sorted(clips):
                c, g = clips[(cam, lo, hi)], gaps[(cam, lo, hi)]
                if clip_page is None:
                    runs = merged_runs(((a, b) for _, a, b, _ in c), lo, hi)  # one pass over the clips, then runs only
                    per_run, total = None, None
                else:
                    runs, per_run, total = runs_of.get((cam, lo, hi), ([], [], 0))
                parts = uncovered(lo, hi, runs, gaps=g, registered_ms=registered.get(cam),
                                  spool=spooled.get(cam, NOTHING_SPOOLED), now_ms=now_ms) if footage else []
                windows.append(WindowFootage(cam, lo, hi, c, g, merge_windows([t for t in tests[cam] if lo <= t[0] < hi]),
                                             parts, runs, total, per_run))
            if held is None:
                held = set()
                if holds and any(w.clips for w in windows):
                    held = {r[0] for r in report_sql.raw_rows(conn, report_sql.holds_sql(conn.dialect.name), (report_no,))}
        return ReportFootage(list(records), windows, held)


    @db_guarded
    def held_per_window(self, report_no: str, windows: Sequence[WindowFootage]) -> list[int]:
        """How many segments of each window are held for an export of the report (the
        paged footage lists only the first clips, so their ``on_hold`` cannot be counted).
        Read from the holds (only exported reports have any), not from the windows'
        segments, which may be thousands."""
        h, p, s = Hold.__table__, ExportPackage.__table__, Segment.__table__
        with self.reads.connect() as conn:
            rows = conn.execute(
                sa_select(s.c.camera_id, s.c.start_ms, s.c.end_ms).select_from(h)
                .join(p, p.c.id == h.c.package_id).join(s, s.c.id == h.c.segment_id)
                .where(p.c.report_no == report_no, h.c.released_ms.is_(None), s.c.status == "stored")
                .distinct()).all()
        by_cam: dict[str, list[tuple[int, int]]] = {}
        for cam, a, b in rows:
            by_cam.setdefault(cam, []).append((a, b))
        return [sum(1 for a, b in by_cam.get(w.camera_id, ()) if a < w.end_ms and b > w.start_ms) for w in windows]

    @db_guarded
    def report_clips(self, report_no: str, margin_ms: int, camera_id: str, window_start_ms: int,
                     after: tuple[int, int] | None, limit: int, at_ms: int | None = None,
                     ) -> tuple[WindowFootage, set[int], tuple[int, int] | None]:
        """One page of a report window's clips, after ``after`` = (start_ms, segment id)
        of the previous page's last clip: (window with ``clips`` = this page, held
        segment ids among them, the cursor of the next page or None).  ``at_ms``
        instead of a cursor: the page starting with the first clip that ends after
        that instant (the clip playing then, or the next one): where a player seeks.
        The window must be one of the report's (``report_footage``): a page cannot be
        used to read another camera's or another time's footage list."""
        rf = self.report_footage(report_no, margin_ms, holds=False, footage=False)
        w = next((w for w in rf.windows if w.camera_id == camera_id and w.start_ms == window_start_ms), None)
        if w is None:
            raise NotFoundError(f"报告 {report_no!r} 没有摄像机 {camera_id!r} 在该时间的录像窗口 / "
                                f"report {report_no!r} has no footage window of camera {camera_id!r} starting then")
        seg_t = Segment.__table__
        lo, hi = w.start_ms, w.end_ms
        q = (sa_select(seg_t.c.id, seg_t.c.start_ms, seg_t.c.end_ms, seg_t.c.sha256)
             .where(*_in_window(seg_t, [camera_id], lo, hi)))
        if at_ms is not None and at_ms > lo:  # clips ending after it; the look-back bound moves with it
            q = q.where(*_in_window(seg_t, [camera_id], at_ms, hi))
        if after is not None:  # (start, id) > after, written so that the start bound stays an index condition
            q = q.where(seg_t.c.start_ms >= after[0], or_(seg_t.c.start_ms > after[0], seg_t.c.id > after[1]))
        with self.reads.connect() as conn:
            rows = _dbapi_rows(conn, q.order_by(seg_t.c.start_ms, seg_t.c.id).limit(limit + 1))
            page = [tuple(r) for r in rows[:limit]]
            held: set[int] = set()
            if page:
                held = set(conn.execute(
                    sa_select(Hold.__table__.c.segment_id)
                    .join(ExportPackage.__table__, ExportPackage.__table__.c.id == Hold.__table__.c.package_id)
                    .where(ExportPackage.__table__.c.report_no == report_no, Hold.__table__.c.released_ms.is_(None),
                           Hold.__table__.c.segment_id.in_([r[0] for r in page]))).scalars())
        nxt = (page[-1][1], page[-1][0]) if len(rows) > limit else None
        return WindowFootage(camera_id, lo, hi, page, [], w.tests, [], [], len(page), []), held, nxt


def shared_page(page: int, budget: int, windows: int) -> int:
    """First clips per window when a report's ``windows`` share a budget of about
    ``budget`` clips: at most ``page``, at least one (every window shows where its
    footage starts), evenly otherwise."""
    return min(page, max(1, budget // max(1, windows)))


def _in_window(seg_t, cameras: Sequence[str], lo: int, hi: int) -> tuple:
    """Stored segments of these cameras overlapping [lo, hi).  The bounded lower edge
    (no segment is longer than MAX_SEGMENT_MS) keeps it an index range scan on
    (camera_id, start_ms) (see IndexStore.footage)."""
    cam = seg_t.c.camera_id.in_(cameras) if len(cameras) != 1 else seg_t.c.camera_id == cameras[0]
    return (cam, seg_t.c.start_ms < hi, seg_t.c.start_ms > lo - MAX_SEGMENT_MS, seg_t.c.end_ms > lo,
            seg_t.c.status == "stored")


def _segments_per_run(clips: Sequence[tuple], runs: Sequence[tuple[int, int]]) -> list[int]:
    """How many clips of positive length fall in each run (clips in time order)."""
    counts = [0] * len(runs)
    if not runs:
        return counts
    starts = [a for a, _ in runs]
    lo, hi = runs[0][0], runs[-1][1]
    for c in clips:
        a, b = c[1], c[2]
        if b <= a or b <= lo or a >= hi:
            continue
        counts[max(0, bisect.bisect_right(starts, max(a, lo)) - 1)] += 1
    return counts


def compiled(conn, stmt) -> tuple[str, dict | tuple]:
    """The SQL and parameters SQLAlchemy would send for ``stmt`` on this connection's
    dialect (expanding IN rendered), for running it on the DB-API cursor."""
    c = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = c.params
    if c.positional:
        params = tuple(params[k] for k in c.positiontup)
    return str(c), params


def _dbapi_rows(conn, stmt) -> list[tuple]:
    """Run a SELECT on the connection's DB-API cursor and return its plain tuples.
    For the one statement that returns thousands of rows per report: SQLAlchemy's
    Row objects cost a third of the whole query there (bench/report_query).  Same
    connection, same transaction; the statement is compiled by SQLAlchemy for the
    dialect (expanding IN rendered), so it stays portable."""
    return report_sql.raw_rows(conn, *compiled(conn, stmt))


def _resolve_cameras(rows, per_record: list[tuple[list[str], list[str]]]) -> tuple[list[set[str]], dict[str, int]]:
    """For each record (area ids, equipment ids): the cameras of its areas plus the
    cameras watching its instruments (or, for an instrument no camera is linked to,
    the cameras of the instrument's area), from the rows of
    :func:`index.report_sql.report_records`; and each such camera's registration time."""
    links: dict[str, set[str]] = {}
    eq_cams: dict[str, set[str]] = {}  # the cameras of an instrument's area
    by_area: dict[str, set[str]] = {}
    created: dict[str, int] = {}
    for kind, key, cam_id, created_ms in rows:
        (links if kind == "l" else eq_cams if kind == "e" else by_area).setdefault(key, set()).add(cam_id)
        if created_ms is not None:
            created[cam_id] = created_ms
    out = []
    for ars, eqs in per_record:
        cams: set[str] = set()
        for a in ars:
            cams |= by_area.get(a, set())
        for e in eqs:
            cams |= links.get(e) or eq_cams.get(e, set())
        out.append(cams)
    return out, created
