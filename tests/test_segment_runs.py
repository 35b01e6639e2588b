"""Runs kept by the index (decision 54, index.segment_runs, migration 0017): after every
kind of write to ``segment`` the table ``segment_run`` holds exactly the runs the stored
segments give, on SQLite and PostgreSQL (the ``index`` fixture is parametrised).  The writes
are the real ones: ORM inserts (the uploader's ``add_segment``), Core bulk inserts (the
restore), the sweep's garbage mark and its revert, deletes, and a delete that nobody settles
(a node of the previous release), which a report must still answer right."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlmodel import Session

from index import segment_runs
from index.coverage import CoverageStore
from index.models import Area, Camera, Segment, TestRecord
from index.records import RecordStore
from labwitness.segment_limits import MAX_SEGMENT_MS

SEG = Segment.__table__
BASE = 1_790_000_000_000
CAMS = ("cam-a", "cam-b", "cam-c")


def _row(n: int, cam: str, a: int, b: int, status: str = "stored") -> dict:
    return dict(camera_id=cam, start_ms=BASE + a, end_ms=BASE + b, media_duration_ms=max(0, b - a),
                key=f"v1/{cam}/{n}.mp4", version_id=f"v{n}", size=100, sha256=f"{n:064d}", codec="h264",
                status=status)


class Lab:
    """``unit``: milliseconds per unit of the spans below (60: segments of up to 25 minutes and
    holes of an hour, so that they cross the hours ``segment_hour`` counts by)."""

    def __init__(self, index, seed: int, unit: int = 1) -> None:
        self.index, self.rng, self.n, self.unit = index, random.Random(seed), 0, unit
        self.t = {c: self.rng.randrange(0, 20_000) for c in CAMS}

    def spans(self, k: int):
        """k segments of a random camera: mostly appended one after the other, sometimes
        overlapping, touching, late (out of order), of no length, or after a hole."""
        out = []
        for _ in range(k):
            cam = self.rng.choice(CAMS)
            length = self.rng.choice((0, 4_000, 10_000, 10_000, 10_000, 25_000))
            kind = self.rng.random()
            if kind < 0.15:  # late: somewhere in what this camera recorded already
                a = self.rng.randrange(0, max(1, self.t[cam]))
            else:
                a = self.t[cam] + self.rng.choice((0, 0, 0, -3_000, 2_000, 60_000))
                self.t[cam] = max(self.t[cam], a + length)
            self.n += 1
            a, length = max(0, a) * self.unit, length * self.unit
            out.append(_row(self.n, cam, a, a + length, "garbage" if self.rng.random() < 0.05 else "stored"))
        return out

    def check(self) -> None:
        with self.index.engine.begin() as conn:
            dirty = conn.execute(text("SELECT COUNT(*) FROM segment_run_dirty")).scalar_one()
            assert dirty == 0
            assert segment_runs.differences(conn) == []

    def ids(self, status: str, k: int) -> list[int]:
        with self.index.engine.connect() as conn:
            got = list(conn.execute(select(SEG.c.id).where(SEG.c.status == status)).scalars())
        return self.rng.sample(got, min(k, len(got)))


@pytest.mark.parametrize("seed, unit", [(1, 1), (2, 1), (3, 60), (4, 60)])
def test_every_write_keeps_the_runs_exact(index, seed, unit):
    """... and the hour counts and each run's longest-segment bound (migration 0018)."""
    lab = Lab(index, seed, unit)
    for step in range(40):
        op = lab.rng.random()
        if op < 0.35:  # the uploader's path: one ORM insert per segment
            for r in lab.spans(lab.rng.randrange(1, 6)):
                got = index.add_segment(Segment(**r))
                with index.engine.connect() as conn:  # SQLite: the trigger's insert must not become the row's id
                    assert conn.execute(select(SEG.c.key).where(SEG.c.id == got.id)).scalar_one() == r["key"]
        elif op < 0.55:  # the restore's path: a bulk Core insert
            with index.engine.begin() as conn:
                conn.execute(insert(SEG), lab.spans(lab.rng.randrange(5, 40)))
        elif op < 0.75:  # the sweep: stored -> garbage, settled in the same transaction
            ids = lab.ids("stored", lab.rng.randrange(1, 12))
            with index.engine.begin() as conn:
                conn.execute(update(SEG).where(SEG.c.id.in_(ids)).values(status="garbage"))
                segment_runs.settle(conn)
        elif op < 0.85:  # the sweep's revert: garbage -> stored (the trigger joins them back)
            ids = lab.ids("garbage", lab.rng.randrange(1, 6))
            with index.engine.begin() as conn:
                conn.execute(update(SEG).where(SEG.c.id.in_(ids)).values(status="stored"))
        else:  # rows deleted (the sweep's garbage rows, the rebuild's expired ones, stored ones too)
            ids = lab.ids("stored", 3) + lab.ids("garbage", 3)
            with index.engine.begin() as conn:
                conn.execute(delete(SEG).where(SEG.c.id.in_(ids)))
                segment_runs.settle(conn)
        lab.check()
    with index.engine.connect() as conn:
        runs = segment_runs.stored(conn)
    assert sum(len(v) for v in runs.values()) > len(CAMS)  # holes were made: more than one run per camera


def test_settle_reads_only_near_what_changed(index):
    """A sweep of the oldest hour of a long run recomputes that hour, not the whole run:
    the chain after it is found with one bounded query (procedure 3)."""
    rows = [_row(i, "cam-a", i * 10_000, (i + 1) * 10_000) for i in range(3_000)]  # 8 h 20 min, one run
    with index.engine.begin() as conn:
        conn.execute(insert(SEG), rows)
    statements: list[str] = []
    with index.engine.begin() as conn:
        conn.execute(update(SEG).where(SEG.c.start_ms < BASE + 360 * 10_000).values(status="garbage"))
        from sqlalchemy import event

        def seen(_c, _cur, statement, params, _ctx, _many):
            statements.append(statement)
        event.listen(conn, "before_cursor_execute", seen)
        segment_runs.settle(conn)
        event.remove(conn, "before_cursor_execute", seen)
        assert segment_runs.stored(conn)["cam-a"] == [(BASE + 3_600_000, BASE + 30_000_000)]
        assert segment_runs.differences(conn) == []
    reads = [s for s in statements if "FROM segment " in s and "segment_run" not in s]
    # the chain after the hour (one MIN) and the hour itself plus MAX on each side: nothing of the rest
    assert len(reads) == 2, reads


def test_a_delete_nobody_settles_is_answered_from_the_segments(index):
    """A node of the previous release deletes stored footage (no settle): the report still
    answers what its segments say, and the coverage job settles the runs afterwards."""
    with Session(index.engine) as s:
        s.add(Area(id="lab", name="力学室", created_ms=0))
        s.add(Camera(id="cam-a", rtsp_url="rtsp://x/", area_id="lab", created_ms=0))
        s.add(TestRecord(record_id="r1", report_no="R-OLD", started_ms=BASE + 100_000, ended_ms=BASE + 900_000,
                         area_ids=json.dumps(["lab"]), equipment_ids="[]", updated_ms=0))
        s.commit()
    with index.engine.begin() as conn:
        conn.execute(insert(SEG), [_row(i, "cam-a", i * 10_000, (i + 1) * 10_000) for i in range(100)])
        conn.execute(delete(SEG).where(SEG.c.start_ms.between(BASE + 300_000, BASE + 350_000)))  # no settle
    store = RecordStore(index.engine, lambda: BASE + 2_000_000)
    full = store.report_footage("R-OLD", margin_ms=60_000)
    paged = store.report_footage("R-OLD", margin_ms=60_000, clip_page=5)
    (f,), (p,) = full.windows, paged.windows
    assert len(f.runs) == 2 and p.runs == f.runs and p.run_segments == f.run_segments
    assert p.clips_total == f.clips_total == 86 and p.parts == f.parts
    with index.engine.connect() as conn:
        assert segment_runs.stored(conn)["cam-a"] == [(BASE, BASE + 1_000_000)]  # not settled yet
    CoverageStore(index.engine, lambda: BASE + 2_000_000).refresh()
    with index.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM segment_run_dirty")).scalar_one() == 0
        assert segment_runs.stored(conn)["cam-a"] == [(BASE, BASE + 300_000), (BASE + 360_000, BASE + 1_000_000)]
    again = store.report_footage("R-OLD", margin_ms=60_000, clip_page=5).windows[0]
    assert again.runs == f.runs and again.run_segments == f.run_segments and again.clips_total == 86


def test_rebuild_recomputes_every_run(index):
    lab = Lab(index, 9)
    with index.engine.begin() as conn:
        conn.execute(insert(SEG), lab.spans(200))
        want = segment_runs.expected(conn)
        conn.execute(text("DELETE FROM segment_run"))
        assert segment_runs.stored(conn) == {}
        assert segment_runs.rebuild(conn) == sum(len(v) for v in want.values())
        assert segment_runs.stored(conn) == want
    assert MAX_SEGMENT_MS > 25_000  # the lab's longest segment is within the bound the settle relies on


def test_a_report_statement_the_database_refuses_is_index_unavailable(pg_url):
    """The report's statements run on the DB-API cursor (index.report_sql), past SQLAlchemy's
    execution: a real refusal there (a lock wait past lock_timeout, another session holding
    the kept runs) must still be IndexUnavailableError (HTTP 503), as for every other query."""
    from sqlalchemy import create_engine

    from index.db import make_engine
    from index.migrate import upgrade
    from labwitness.errors import IndexUnavailableError

    engine = make_engine(pg_url)
    upgrade(engine)
    with Session(engine) as s:
        s.add(Area(id="lab", name="力学室", created_ms=0))
        s.add(Camera(id="cam-a", rtsp_url="rtsp://x/", area_id="lab", created_ms=0))
        s.add(TestRecord(record_id="r1", report_no="R-LOCK", started_ms=BASE, ended_ms=BASE + 60_000,
                         area_ids=json.dumps(["lab"]), equipment_ids="[]", updated_ms=0))
        s.commit()
    impatient = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
                              + "?options=-c%20lock_timeout%3D200")
    store = RecordStore(impatient, lambda: BASE + 120_000)
    assert store.report_footage("R-LOCK", margin_ms=0, clip_page=5).windows  # answers while nobody holds it
    holder = engine.connect()
    try:
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("LOCK TABLE segment_run IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(IndexUnavailableError):
            store.report_footage("R-LOCK", margin_ms=0, clip_page=5)
    finally:
        holder.rollback()
        holder.close()
    assert store.report_footage("R-LOCK", margin_ms=0, clip_page=5).windows  # and again once it is let go
    impatient.dispose()
    engine.dispose()


def _truth(rows, window):
    """A window's runs, segments per run and all its segments, straight from the segment rows
    (what index.report_sql must answer from the kept runs and hours)."""
    cam, lo, hi = window
    pos = [(a, b) for c, a, b, st in rows if c == cam and st == "stored" and b > a]
    runs = [(max(a, lo), min(b, hi)) for a, b in segment_runs.merge(pos) if b > lo and a < hi]
    per_run = [sum(1 for a, b in pos if a < rb and b > ra) for ra, rb in runs]
    empty = sum(1 for c, a, b, st in rows if c == cam and st == "stored" and b <= a
                and lo - MAX_SEGMENT_MS < a < hi and b > lo)
    return runs, per_run, sum(per_run) + empty


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_report_counts_from_hours_match_the_segments(index, seed):
    """Each window's runs and counts (whole hours from segment_hour, partial hours and the
    segments reaching into it from the index) equal a count over the segments themselves:
    windows on hour boundaries, inside one hour, across many, starting inside a segment,
    after garbage marks, reverts and deletes, and with a run whose bound is the previous
    release's default (MAX_SEGMENT_MS)."""
    from index import report_sql

    lab = Lab(index, seed, unit=60)
    with index.engine.begin() as conn:
        conn.execute(insert(SEG), lab.spans(400))
    for _ in range(3):
        with index.engine.begin() as conn:
            conn.execute(update(SEG).where(SEG.c.id.in_(lab.ids("stored", 15))).values(status="garbage"))
            conn.execute(update(SEG).where(SEG.c.id.in_(lab.ids("garbage", 5))).values(status="stored"))
            conn.execute(delete(SEG).where(SEG.c.id.in_(lab.ids("stored", 5))))
            segment_runs.settle(conn)
    with index.engine.begin() as conn:  # one run as a node of the previous release writes it
        conn.execute(text(f"UPDATE segment_run SET max_len_ms = {MAX_SEGMENT_MS} WHERE id = (SELECT MIN(id) FROM segment_run)"))
    lab.check()
    with index.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(SEG.c.camera_id, SEG.c.start_ms, SEG.c.end_ms, SEG.c.status))]
        ids = [tuple(r) for r in conn.execute(select(SEG.c.id, SEG.c.camera_id, SEG.c.start_ms, SEG.c.end_ms,
                                                     SEG.c.status))]
    hi_all = max(r[2] for r in rows)
    hour = segment_runs.HOUR_MS
    windows = set()
    for _ in range(120):
        cam = lab.rng.choice(CAMS)
        kind = lab.rng.random()
        lo = lab.rng.randrange(BASE - hour, hi_all)
        if kind < 0.25:  # on an hour boundary, a whole number of hours long
            lo -= lo % hour
            hi = lo + hour * lab.rng.randrange(1, 6)
        elif kind < 0.5:  # inside one hour
            lo = lo - lo % hour + lab.rng.randrange(0, hour // 2)
            hi = lo + lab.rng.randrange(1, hour // 2)
        elif kind < 0.75:  # starting inside a segment
            c, a, b, _ = lab.rng.choice([r for r in rows if r[0] == cam and r[2] > r[1] + 1])
            lo = lab.rng.randrange(a + 1, b)
            hi = lo + lab.rng.randrange(1, 8 * hour)
        else:
            hi = lo + lab.rng.randrange(1, 12 * hour)
        windows.add((cam, lo, hi))
    windows = sorted(windows)
    with index.engine.connect() as conn:
        runs_of, first, _, _ = report_sql.report_windows(conn, windows, clip_page=3)
    counted = whole_hours = 0
    for w in windows:
        runs, per_run, total = _truth(rows, w)
        got = runs_of.get(w, ([], [], 0))
        assert (got[0], got[1], got[2]) == (runs, per_run, total), w
        # the first clips too, though they look back only as far as the run's longest segment
        cam, lo, hi = w
        want = sorted((a, i, b) for i, c, a, b, st in ids if c == cam and st == "stored" and a < hi and b > lo)[:3]
        assert [(r[1], r[0], r[2]) for r in first.get(w, [])] == want, w
        counted += total
        hours_inside = max(0, (w[2] - w[2] % hour) - (w[1] + hour - 1 - (w[1] + hour - 1) % hour)) // hour
        whole_hours += hours_inside if total else 0
    # the windows hold footage, in whole hours too: the comparison compared something
    assert counted > 500 and whole_hours > 50, (counted, whole_hours)


def test_migration_0018_fills_hours_and_bounds(db_url):
    """Segments written under 0017 (no hours, no bounds): after 0018 the hours and each run's
    bound are what the segments give."""
    from index.db import make_engine
    from index.migrate import upgrade

    engine = make_engine(db_url)
    upgrade(engine, "0017")
    lab = Lab(type("I", (), {"engine": engine})(), 21, unit=60)
    with engine.begin() as conn:
        conn.execute(insert(SEG), lab.spans(150))
    upgrade(engine)
    with engine.begin() as conn:
        assert segment_runs.stored_hours(conn) and segment_runs.differences(conn) == []
        assert conn.execute(text(f"SELECT COUNT(*) FROM segment_run WHERE max_len_ms = {MAX_SEGMENT_MS}")).scalar_one() == 0
    engine.dispose()


def test_index_connections_have_no_jit_and_keep_the_urls_options(pg_url):
    """PostgreSQL would JIT-compile a report's window statements (estimated past jit_above_cost),
    ~25 ms for statements that run in ~5: the index's connections have JIT off from the start
    (no statement per report), and options an installation put in its URL still apply."""
    from index.db import make_engine

    for url, lock_timeout in ((pg_url, "0"), (pg_url + "?options=-c%20lock_timeout%3D1234", "1234ms")):
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW jit").scalar_one() == "off"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar_one() == lock_timeout
        engine.dispose()
    on = make_engine(pg_url + "?options=-c%20jit%3Don")  # the installation's word wins
    with on.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar_one() == "on"
    on.dispose()
