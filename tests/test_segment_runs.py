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
    def __init__(self, index, seed: int) -> None:
        self.index, self.rng, self.n = index, random.Random(seed), 0
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
            out.append(_row(self.n, cam, max(0, a), max(0, a) + length,
                            "garbage" if self.rng.random() < 0.05 else "stored"))
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


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_write_keeps_the_runs_exact(index, seed):
    lab = Lab(index, seed)
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
