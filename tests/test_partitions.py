"""Monthly partitions of segment and gap on PostgreSQL (index.partitions, migration 0015):
the migration keeps existing rows, months are created ahead and on demand (the default
partition split), queries prune to the months of their window and answer as on SQLite, and
the sweep drops only an empty, expired month under its lock."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import MetaData, Table, insert, text
from sqlmodel import Session

from index.coverage import CoverageStore
from index.db import make_engine, sqlite_url
from index.joblock import job_lock
from index.migrate import upgrade
from index.models import Camera, Gap, Segment, TestRecord
from index.partitions import ensure_partitions, partitions
from index.queries import IndexStore
from index.records import RecordStore
from retention.policy import partition_may_drop
from retention.sweep import drop_empty_months, run_partition_drop


def ms(y: int, m: int, d: int = 1, h: int = 0) -> int:
    return int(datetime(y, m, d, h, tzinfo=timezone.utc).timestamp() * 1000)


NOW = ms(2026, 12, 4)


def seg(cam: str, start: int, n: int, dur: int = 60_000) -> Segment:
    return Segment(camera_id=cam, start_ms=start, end_ms=start + dur, media_duration_ms=dur, key=f"v1/{cam}/{n}.mp4",
                   version_id=f"v{n}", size=1000 + n, sha256="0" * 64, codec="h264")


def names(engine, table="segment") -> set[str]:
    with engine.connect() as c:
        return {p.name for p in partitions(c, table)}


def fill_raw(conn, table: str, rows: list[dict]) -> None:
    """Rows through the table as the database has it (any revision): unnamed NOT NULL columns get zero values."""
    t = Table(table, MetaData(), autoload_with=conn)
    full = []
    for r in rows:
        row = dict(r)
        for c in t.columns:
            if c.name not in row and not c.nullable and c.server_default is None and c.name != "id":
                row[c.name] = "" if c.type.python_type is str else 0
        full.append(row)
    conn.execute(insert(t), full)


def test_migration_keeps_rows_and_makes_month_partitions(pg_url):
    eng = make_engine(pg_url)
    upgrade(eng, "0012")
    starts = [ms(2026, 3, 31, 23), ms(2026, 4, 15), ms(2026, 6, 2)]
    with eng.begin() as c:
        fill_raw(c, "segment", [{"camera_id": "a", "start_ms": t, "end_ms": t + 60_000, "key": f"k{i}", "version_id": "v",
                                 "sha256": "0" * 64, "status": "stored"} for i, t in enumerate(starts)])
        fill_raw(c, "gap", [{"camera_id": "a", "start_ms": starts[1] + 60_000, "end_ms": starts[2], "reason": "timeout"}])
        before = c.execute(text("SELECT id, camera_id, start_ms, key FROM segment ORDER BY id")).all()
    upgrade(eng)
    with eng.connect() as c:
        assert c.execute(text("SELECT id, camera_id, start_ms, key FROM segment ORDER BY id")).all() == before
        assert c.execute(text("SELECT count(*) FROM gap")).scalar() == 1
        # every row sits in its month's partition; the default is empty
        where = dict(c.execute(text("SELECT key, tableoid::regclass::text FROM segment")).all())
        pk = c.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'segment_pkey'")).scalar()
    assert where == {"k0": "segment_m202603", "k1": "segment_m202604", "k2": "segment_m202606"}
    assert {"segment_m202603", "segment_m202604", "segment_m202605", "segment_m202606", "segment_default"} <= names(eng)
    assert "gap_m202604" in names(eng, "gap") and "gap_default" in names(eng, "gap")
    assert pk == "PRIMARY KEY (id, start_ms)"
    idx = IndexStore(eng)
    new = idx.add_segment(seg("a", starts[1] + 60_000, 99))
    assert new.id > max(r.id for r in before)  # the id sequence went along
    assert idx.add_segment(seg("a", starts[1] + 60_000, 99)).id == new.id  # replay: still one row
    with pytest.raises(Exception):  # the unique key still refuses a duplicate version
        with eng.begin() as c:
            fill_raw(c, "segment", [{"camera_id": "a", "start_ms": starts[0], "end_ms": starts[0] + 1, "key": "k0",
                                     "version_id": "v", "sha256": "0" * 64}])
    upgrade_down = __import__("alembic.command", fromlist=["downgrade"]).downgrade
    from index.migrate import alembic_config
    cfg = alembic_config()
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        upgrade_down(cfg, "0012")
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM segment")).scalar() == 4
        assert c.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'segment_pkey'")
                         ).scalar() == "PRIMARY KEY (id)"
    eng.dispose()


def test_sqlite_is_not_partitioned(tmp_path):
    eng = make_engine(sqlite_url(tmp_path / "i.sqlite3"))
    upgrade(eng)
    assert ensure_partitions(eng, NOW) == []
    with eng.connect() as c:
        tables = {r[0] for r in c.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'segment%'"))}
        assert tables == {"segment", "segment_run", "segment_run_dirty", "segment_hour"}  # no month tables
    assert drop_empty_months(eng, NOW, 6) == []
    eng.dispose()


def test_new_month_lands_in_default_then_gets_its_partition(pg_url):
    eng = make_engine(pg_url)
    upgrade(eng)
    idx = IndexStore(eng)
    far = ms(2031, 5, 10)  # no partition for May 2031: the default takes it, nothing is refused
    s = idx.add_segment(seg("a", far, 1))
    idx.add_gap(Gap(camera_id="a", start_ms=far + 60_000, end_ms=far + 120_000, reason="timeout"))
    with eng.connect() as c:
        assert c.execute(text("SELECT tableoid::regclass::text FROM segment WHERE id = :i"), {"i": s.id}).scalar() \
            == "segment_default"
    made = ensure_partitions(eng, far)
    assert {"segment_m203105", "gap_m203105", "segment_m203108"} <= set(made)
    with eng.connect() as c:
        assert c.execute(text("SELECT tableoid::regclass::text FROM segment WHERE id = :i"), {"i": s.id}).scalar() \
            == "segment_m203105"
        assert c.execute(text("SELECT count(*) FROM segment_default")).scalar() == 0
        assert c.execute(text("SELECT count(*) FROM gap_default")).scalar() == 0
    assert [x.id for x in idx.footage("a", far, far + 60_000).segments] == [s.id]
    assert ensure_partitions(eng, far) == []  # idempotent
    eng.dispose()


def _load(eng) -> None:
    """The same footage for both databases: 3 cameras over three months, a report across a month edge."""
    with Session(eng) as s:
        s.add_all([Camera(id=c, rtsp_url="rtsp://x/", area_id="lab", created_ms=ms(2026, 1, 1)) for c in ("a", "b", "c")])
        s.add(TestRecord(record_id="r1", report_no="R-9", started_ms=ms(2026, 2, 28, 22), ended_ms=ms(2026, 3, 1, 2),
                         area_ids=json.dumps(["lab"]), updated_ms=0))
        s.commit()
    from index.models import Area
    with Session(eng) as s:
        s.add(Area(id="lab", name="力学室", created_ms=0))
        s.commit()
    idx, n = IndexStore(eng), 0
    for cam in ("a", "b", "c"):
        t = ms(2026, 1, 20)
        while t < ms(2026, 3, 10):
            n += 1
            if n % 7:  # some holes
                idx.add_segment(seg(cam, t, n))
            t += 180 * 60_000 if cam != "a" or not ms(2026, 2, 28) <= t < ms(2026, 3, 2) else 60_000
        idx.add_gap(Gap(camera_id=cam, start_ms=ms(2026, 2, 28, 23), end_ms=ms(2026, 3, 1, 0), reason="timeout"))


def _explained_relations(conn, sql: str, params) -> set[str]:
    cur = conn.connection.cursor()
    try:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
    finally:
        cur.close()
    out: set[str] = set()

    def walk(node):
        if "Relation Name" in node:
            out.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)
    walk(plan[0]["Plan"])
    return out


def test_queries_prune_and_answer_as_on_sqlite(pg_url, tmp_path, monkeypatch):
    pg, lite = make_engine(pg_url), make_engine(sqlite_url(tmp_path / "i.sqlite3"))
    for e in (pg, lite):
        upgrade(e)
        _load(e)
    ensure_partitions(pg, NOW)  # the rows landed in the default; this splits it by month
    assert {"segment_m202601", "segment_m202602", "segment_m202603"} <= names(pg)

    import index.records as records
    touched: list[set[str]] = []
    real = records._dbapi_rows

    def explain_then_run(conn, stmt):
        if conn.dialect.name == "postgresql" and "FROM segment" in str(stmt):
            touched.append(_explained_relations(conn, *records.compiled(conn, stmt)))
        return real(conn, stmt)
    monkeypatch.setattr(records, "_dbapi_rows", explain_then_run)
    answers = []
    for e in (pg, lite):
        rf = RecordStore(e, lambda: NOW).report_footage("R-9", margin_ms=3_600_000)
        answers.append([(w.camera_id, w.start_ms, w.end_ms, [c[2:] for c in w.clips], w.gaps, w.covered_ms)
                        for w in rf.windows])
    assert answers[0] == answers[1] and any(w[3] for w in answers[0])
    # the report spans Feb 28 21:00 - Mar 1 03:00: only February's and March's segment partitions are read
    assert touched == [{"segment_m202602", "segment_m202603"}]

    # paged (decision 48): the runs and first-clips statements prune alike and answer as the full list
    import index.report_sql as report_sql

    real_raw = report_sql.raw_rows

    def explain_raw(conn, sql, params):
        if conn.dialect.name == "postgresql" and "FROM segment" in sql:
            touched.append(_explained_relations(conn, sql, params))
        return real_raw(conn, sql, params)
    monkeypatch.setattr(report_sql, "raw_rows", explain_raw)
    real_many = report_sql.raw_many

    def explain_many(conn, stmts, **kw):
        if conn.dialect.name == "postgresql":
            touched.extend(_explained_relations(conn, sql, params) for sql, params in stmts if "FROM segment" in sql)
        return real_many(conn, stmts, **kw)
    monkeypatch.setattr(report_sql, "raw_many", explain_many)
    touched.clear()
    for e in (pg, lite):
        rf = RecordStore(e, lambda: NOW).report_footage("R-9", margin_ms=3_600_000, clip_page=2)
        assert [(w.camera_id, w.start_ms, w.end_ms, [c[2:] for c in w.clips], w.gaps, w.covered_ms)
                for w in rf.windows] == [(*a[:3], a[3][:2], *a[4:]) for a in answers[0]]
    # the runs come from the kept runs (decision 54), their counts from February's and March's partitions only
    assert "segment_run" in touched[0]
    assert [{n for n in t if n.startswith("segment_m")} for t in touched] == [{"segment_m202602", "segment_m202603"}] * 2

    # one camera's footage window and health's coverage sums: same answers, pruned too
    for lo, hi in ((ms(2026, 2, 27), ms(2026, 3, 3)), (ms(2026, 1, 25), ms(2026, 1, 26))):
        fp, fl = IndexStore(pg).footage("a", lo, hi), IndexStore(lite).footage("a", lo, hi)
        assert [(s.start_ms, s.key) for s in fp.segments] == [(s.start_ms, s.key) for s in fl.segments]
        assert fp.covered_ms == fl.covered_ms
    cov = [CoverageStore(e, lambda: NOW) for e in (pg, lite)]
    for c in cov:
        c.refresh()
    span = (ms(2026, 1, 1), ms(2026, 4, 1))
    assert cov[0].totals(["a", "b", "c"], *span) == cov[1].totals(["a", "b", "c"], *span)
    with pg.connect() as c:
        from index.coverage import _window_sums
        import index.coverage as coverage_mod
        stmts = []
        monkeypatch.setattr(coverage_mod, "_window_sums", lambda conn, cams, lo, hi: stmts.append((lo, hi)) or
                            _window_sums(conn, cams, lo, hi))
        cov[0].totals(["a"], ms(2026, 3, 5, 12), ms(2026, 3, 6, 12))
        assert stmts  # the live edges of a window: a time predicate the planner prunes on
        q = c.execute(text("EXPLAIN (FORMAT JSON) SELECT sum(end_ms - start_ms) FROM segment WHERE camera_id = 'a' "
                           "AND start_ms < :hi AND start_ms > :lo - 600000 AND end_ms > :lo AND status = 'stored'"),
                      {"lo": stmts[0][0], "hi": stmts[0][1]}).scalar()
        assert "segment_m202603" in json.dumps(q) and "segment_m202602" not in json.dumps(q)
    pg.dispose()
    lite.dispose()


@pytest.mark.parametrize(("month_end", "now", "months", "rows", "ok"), [
    (ms(2026, 2, 1), ms(2026, 8, 1), 6, 0, True),      # January: six months after its end, empty
    (ms(2026, 2, 1), ms(2026, 7, 31), 6, 0, False),    # one day short
    (ms(2026, 2, 1), ms(2026, 8, 1), 6, 1, False),     # a row still present
    (ms(2026, 2, 1), ms(2026, 8, 1), 12, 0, False),    # a longer retention
    (ms(2026, 2, 1), ms(2026, 8, 1), 3, 0, True),      # below the legal minimum counts as six
    (ms(2026, 2, 1), ms(2026, 5, 1), 3, 0, False),
])
def test_partition_drop_rule(month_end, now, months, rows, ok):
    assert partition_may_drop(month_end_ms=month_end, now_ms=now, retention_months=months, rows_left=rows) is ok


def test_sweep_drops_only_empty_expired_months_under_its_lock(pg_url):
    eng = make_engine(pg_url)
    upgrade(eng)
    idx = IndexStore(eng)
    kept = idx.add_segment(seg("a", ms(2026, 1, 15), 1))  # January keeps one row
    gone = idx.add_segment(seg("a", ms(2026, 2, 15), 2))  # February's only row ...
    idx.add_segment(seg("a", ms(2026, 11, 15), 3))  # November: recent
    ensure_partitions(eng, NOW)
    with eng.begin() as c:  # ... removed, as the sweep does once storage confirmed the version deleted
        c.execute(text("DELETE FROM segment WHERE id = :i"), {"i": gone.id})
    with eng.begin() as c:
        c.execute(text("DELETE FROM segment WHERE start_ms >= :lo AND start_ms < :hi"),
                  {"lo": ms(2026, 12, 1), "hi": ms(2027, 1, 1)})  # December is empty but not expired
    now = ms(2026, 9, 1)
    with job_lock(eng, "index-storage"):  # a sweep (or reconcile, rebuild) is running elsewhere
        assert run_partition_drop(eng, now, 6) is None
    assert "segment_m202602" in names(eng)
    assert run_partition_drop(eng, now, 6) == ["segment_m202602"]
    left = names(eng)
    assert "segment_m202602" not in left
    assert {"segment_m202601", "segment_m202611", "segment_m202612", "segment_default"} <= left
    assert [s.id for s in idx.footage("a", ms(2026, 1, 1), ms(2026, 2, 1)).segments] == [kept.id]
    # a late row for the dropped month is not refused: the default partition takes it
    idx.add_segment(seg("a", ms(2026, 2, 20), 4))
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM segment_default")).scalar() == 1
    eng.dispose()
