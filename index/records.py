"""Test records from the lab's core data upload modules, with every revision kept.

Linking records to footage is computed at query time (areas/equipment ->
cameras, record window -> segments), not materialised: a record may arrive
before, during or after its footage, and may be corrected later; a query-time
join can never be stale, and it costs one index range scan per camera.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Callable, Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Camera, Equipment, EquipmentCamera, ExportPackage, Gap, Hold, Segment, TestRecord, TestRecordRevision
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
    ``runs``: the clips merged into runs inside the window (derived when not given)."""

    camera_id: str
    start_ms: int
    end_ms: int
    clips: list[tuple[int, int, int, str]]
    gaps: list[tuple[int, int, str]]
    tests: list[tuple[int, int]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    runs: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        if self.runs is None:  # frozen: derived once here, then every figure reads the few runs
            object.__setattr__(self, "runs", merged_runs(((lo, hi) for _, lo, hi, _ in self.clips),
                                                         self.start_ms, self.end_ms))

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
    held: set[int] = field(default_factory=set)  # segment ids on legal hold for this report's exports


class RecordStore:
    def __init__(self, engine: Engine, now_ms: Callable[[], int], spool: SpoolView | None = None) -> None:
        self.engine = engine
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
    def report_footage(self, report_no: str, margin_ms: int, *, holds: bool = True, footage: bool = True) -> ReportFootage:
        """Everything an inspector's "footage of this report" needs, on one connection
        in a fixed handful of statements: records (1), cameras of their areas and
        instruments (2-3), their registration times (1), per distinct window
        segments and gaps (2), holds (1); the spool's state is read once per report.
        Only the columns shown are fetched, as plain rows: a week-long test has
        ~10 000 one-minute segments and ORM entities would dominate (bench/report_query).
        ``footage=False``: records and windows only (clips, gaps and parts left empty)."""
        rec_t, seg_t, gap_t = TestRecord.__table__, Segment.__table__, Gap.__table__
        with self.engine.connect() as conn:
            records = conn.execute(sa_select(rec_t).where(rec_t.c.report_no == report_no)
                                   .order_by(rec_t.c.started_ms)).all()
            if not records:
                raise NotFoundError(f"报告编号没有对应的检测记录 / no test record has report no. {report_no!r}")
            per_record = [(json.loads(r.area_ids), json.loads(r.equipment_ids)) for r in records]
            cams = _resolve_cameras(conn, per_record)
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
                registered = dict(conn.execute(sa_select(Camera.__table__.c.id, Camera.__table__.c.created_ms)
                                               .where(Camera.__table__.c.id.in_(sorted(spans)))).all())
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
            for (lo, hi), cams_here in by_span.items():
                for k in cams_here:
                    clips[(k, lo, hi)], gaps[(k, lo, hi)] = [], []
                if not footage:
                    continue
                # Bounded lower edge keeps this an index range scan (see IndexStore.footage).
                seg_rows = _dbapi_rows(conn,
                    sa_select(seg_t.c.camera_id, seg_t.c.id, seg_t.c.start_ms, seg_t.c.end_ms, seg_t.c.sha256)
                    .where(seg_t.c.camera_id.in_(cams_here), seg_t.c.start_ms < hi,
                           seg_t.c.start_ms > lo - MAX_SEGMENT_MS, seg_t.c.end_ms > lo, seg_t.c.status == "stored")
                    .order_by(seg_t.c.camera_id, seg_t.c.start_ms))
                for cam, rows in groupby(seg_rows, key=itemgetter(0)):
                    clips[(cam, lo, hi)] = [r[1:] for r in rows]
                gap_rows = conn.execute(
                    sa_select(gap_t.c.camera_id, gap_t.c.start_ms, gap_t.c.end_ms, gap_t.c.reason)
                    .where(gap_t.c.camera_id.in_(cams_here), gap_t.c.start_ms < hi, gap_t.c.end_ms > lo)
                    .order_by(gap_t.c.camera_id, gap_t.c.start_ms)).all()
                for cam, rows in groupby(gap_rows, key=itemgetter(0)):
                    gaps[(cam, lo, hi)] = [r[1:] for r in rows]
            windows = []
            for cam, lo, hi in sorted(clips):
                c, g = clips[(cam, lo, hi)], gaps[(cam, lo, hi)]
                runs = merged_runs(((a, b) for _, a, b, _ in c), lo, hi)  # one pass over the clips, then runs only
                parts = uncovered(lo, hi, runs, gaps=g, registered_ms=registered.get(cam),
                                  spool=spooled.get(cam, NOTHING_SPOOLED), now_ms=now_ms) if footage else []
                windows.append(WindowFootage(cam, lo, hi, c, g, merge_windows([t for t in tests[cam] if lo <= t[0] < hi]),
                                             parts, runs))
            held: set[int] = set()
            if holds and any(w.clips for w in windows):
                held = set(conn.execute(
                    sa_select(Hold.__table__.c.segment_id)
                    .join(ExportPackage.__table__, ExportPackage.__table__.c.id == Hold.__table__.c.package_id)
                    .where(ExportPackage.__table__.c.report_no == report_no, Hold.__table__.c.released_ms.is_(None))).scalars())
        return ReportFootage(list(records), windows, held)


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
    sql, params = compiled(conn, stmt)
    cur = conn.connection.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchall()
    finally:
        cur.close()


def _resolve_cameras(conn, per_record: list[tuple[list[str], list[str]]]) -> list[set[str]]:
    """For each record (area ids, equipment ids): the cameras of its areas plus the
    cameras watching its instruments (or, for an instrument no camera is linked to,
    the cameras of the instrument's area) — for all records of a report at once,
    in 2-3 statements."""
    ec_t, eq_t, cam_t = EquipmentCamera.__table__, Equipment.__table__, Camera.__table__
    all_eq = sorted({e for _, eqs in per_record for e in eqs})
    links: dict[str, set[str]] = {}
    eq_area: dict[str, str] = {}
    if all_eq:
        for eq_id, cam_id in conn.execute(sa_select(ec_t.c.equipment_id, ec_t.c.camera_id)
                                          .where(ec_t.c.equipment_id.in_(all_eq))):
            links.setdefault(eq_id, set()).add(cam_id)
        unlinked = [e for e in all_eq if e not in links]
        if unlinked:
            eq_area = {i: a for i, a in conn.execute(sa_select(eq_t.c.id, eq_t.c.area_id).where(eq_t.c.id.in_(unlinked))) if a}
    areas = sorted({a for ars, _ in per_record for a in ars} | set(eq_area.values()))
    by_area: dict[str, set[str]] = {}
    if areas:
        for cam_id, area_id in conn.execute(sa_select(cam_t.c.id, cam_t.c.area_id).where(cam_t.c.area_id.in_(areas))):
            by_area.setdefault(area_id, set()).add(cam_id)
    out = []
    for ars, eqs in per_record:
        cams: set[str] = set()
        for a in ars:
            cams |= by_area.get(a, set())
        for e in eqs:
            cams |= links.get(e) or by_area.get(eq_area.get(e, ""), set())
        out.append(cams)
    return out
