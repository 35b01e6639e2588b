"""Export -> hold -> release (docs/exports.md): every S3 legal hold has an unreleased Hold
row, a failed export releases what it placed, an interrupted one is recovered from its
rows; an export that cannot vouch for all of its window says so."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from conftest import wait_for

SQLITE_TRIGGERS = {
    "hold_insert": "CREATE TRIGGER lw_refuse_hold BEFORE INSERT ON hold BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
    "package_done": ("CREATE TRIGGER lw_refuse_done BEFORE UPDATE ON export_package WHEN NEW.status = 'done' "
                     "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"),
}
PG_TRIGGERS = {
    "hold_insert": "CREATE TRIGGER lw_refuse_hold BEFORE INSERT ON hold FOR EACH ROW EXECUTE FUNCTION lw_refuse()",
    "package_done": ("CREATE TRIGGER lw_refuse_done BEFORE UPDATE ON export_package FOR EACH ROW "
                     "WHEN (NEW.status = 'done') EXECUTE FUNCTION lw_refuse()"),
}


def refuse(engine, what: str | None) -> None:
    """Make the index database itself refuse one write (a real database error, no fake):
    ``hold_insert`` (the export's Hold rows) or ``package_done`` (its final status);
    None removes both refusals."""
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as c:
        for name, table in (("lw_refuse_hold", "hold"), ("lw_refuse_done", "export_package")):
            c.execute(text(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if pg else "")))
        if what is None:
            return
        if pg:
            c.execute(text("CREATE OR REPLACE FUNCTION lw_refuse() RETURNS trigger AS "
                           "$$ BEGIN RAISE EXCEPTION 'refused by test'; END $$ LANGUAGE plpgsql"))
        c.execute(text((PG_TRIGGERS if pg else SQLITE_TRIGGERS)[what]))


def _ingest(client, rt, record_id: str, report_no: str, start: datetime, end: datetime) -> None:
    from fastapi.testclient import TestClient

    ingest = TestClient(client.app)
    ingest.headers["Authorization"] = f"Bearer {rt.tokens.create('core', 'ingest', 'test')[1]}"
    r = ingest.put(f"/api/v1/test-records/{record_id}", json={
        "report_no": report_no, "area_ids": ["lixue"], "started_at": start.isoformat(), "ended_at": end.isoformat()})
    assert r.status_code == 201, r.text


def _versions_in(rt, start_ms: int, end_ms: int) -> list[tuple[int, str, str]]:
    return [(s.id, s.key, s.version_id) for s in rt.index.footage("cam-api", start_ms, end_ms).segments]


def _s3_held(rt, versions) -> list[int]:
    return [sid for sid, key, vid in versions if rt.store.stat(key, vid)[0].legal_hold]


def _export(client, report_no: str) -> dict:
    r = client.post(f"/api/v1/reports/{report_no}/exports")
    assert r.status_code == 202, r.text
    pid = r.json()["id"]
    return wait_for(lambda: (s := client.get(f"/api/v1/exports/{pid}").json())["status"] != "running" and s, 120,
                    what="export job")


def test_a_failed_export_leaves_no_orphan_s3_hold_and_no_unreleased_row(running):
    from index.models import Hold

    client, rt = running
    now = datetime.now(timezone.utc)
    _ingest(client, rt, "REC-F", "JC-FAIL", now - timedelta(seconds=4), now)
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > now.timestamp() * 1000 + 500, 30,
             what="footage past the record's end")
    margin = rt.settings.report_margin_s * 1000
    # the window's versions as they are now (recording goes on into the window's margin)
    versions = lambda: _versions_in(rt, int(now.timestamp() * 1000) - 4000 - margin, int(now.timestamp() * 1000) + margin)  # noqa: E731
    assert versions() and not _s3_held(rt, versions())
    engine = rt.index.engine

    # 1. the database refuses the Hold rows: the old order had set the S3 holds already, and nothing knew of them
    refuse(engine, "hold_insert")
    st = _export(client, "JC-FAIL")
    assert st["status"] == "failed", st
    assert _s3_held(rt, versions()) == []
    with Session(engine) as s:
        assert list(s.exec(select(Hold))) == []
    # what people see of an internal failure: a reference, never a server path or a traceback
    assert "ref " in st["error"] and "/" not in st["error"].split(" / ")[0] and "Traceback" not in st["error"], st
    assert "/tmp" not in st["error"] and "refused by test" not in st["error"]

    # 2. the export fails after its holds are placed (its final status is refused): it releases them
    refuse(engine, "package_done")
    st = _export(client, "JC-FAIL")
    refuse(engine, None)
    assert st["status"] == "failed", st
    with Session(engine) as s:
        rows = list(s.exec(select(Hold).where(Hold.package_id == st["id"])))
    assert rows and {r.segment_id for r in rows} <= {v[0] for v in versions()}
    assert all(r.released_ms is not None and r.released_by == "system:export-failed" for r in rows), rows
    assert _s3_held(rt, versions()) == []  # the old code left every one of them held, forever
    failed = [e for e in client.get("/api/v1/audit").json() if e["action"] == "export.failed"]
    assert failed and failed[0]["detail"]["holds_released"] == len(rows)

    # and with the database well again, the same report exports and holds its footage
    st = _export(client, "JC-FAIL")
    assert st["status"] == "done", st
    assert _s3_held(rt, versions())


def test_an_interrupted_export_is_found_from_its_rows_and_released(running):
    """A process that died between the Hold rows and the confirmation (some S3 holds set,
    some not) left a running package whose heartbeat stopped: recovery finds every hold
    from the rows and releases it, except where another package still relies on the version."""
    from api.holds import place_holds
    from index.models import ExportPackage, Hold
    from labwitness.clock import utc_ms

    client, rt = running
    segs = list(rt.index.iter_segments("cam-api"))[:3]
    assert len(segs) == 3
    exports = rt.exporter.exports
    long_ago = utc_ms(rt.clock.now()) - 2 * 3600_000
    # a finished package that relies on the first segment
    exports.save(ExportPackage(id="done-pkg", report_no="JC-OTHER", created_ms=long_ago, actor="t", status="done"))
    place_holds(rt.store, exports, "done-pkg", [{"segment_id": segs[0].id, "key": segs[0].key,
                                                 "version_id": segs[0].version_id}])
    # the dead export: rows written (pending), two of its three holds set, then the process ended
    dead = ExportPackage(id="dead-pkg", report_no="JC-DEAD", created_ms=long_ago, actor="t")
    exports.save(dead)
    exports.add_pending_holds("dead-pkg", [s.id for s in segs])
    for s in segs[:2]:
        rt.store.set_legal_hold(s.key, s.version_id, True)
    with Session(rt.index.engine) as s:  # its heartbeat stopped two hours ago
        row = s.get(ExportPackage, "dead-pkg")
        row.updated_ms = long_ago
        s.add(row)
        s.commit()

    assert rt.exporter.recover() == ["dead-pkg"]
    pkg = rt.exporter.get("dead-pkg")
    assert pkg.status == "failed" and "interrupted" in pkg.error
    with Session(rt.index.engine) as s:
        rows = list(s.exec(select(Hold).where(Hold.package_id == "dead-pkg")))
    assert len(rows) == 3 and all(r.released_ms is not None for r in rows)
    held = {s.id: rt.store.stat(s.key, s.version_id)[0].legal_hold for s in segs}
    assert held == {segs[0].id: True, segs[1].id: False, segs[2].id: False}  # the done package keeps its one
    assert rt.exporter.recover() == []  # nothing left to find
    # an admin releasing the finished package's holds: the last one goes too
    assert client.post("/api/v1/exports/done-pkg/release-hold").json()["released"] == 1
    assert not rt.store.stat(segs[0].key, segs[0].version_id)[0].legal_hold


def test_release_refused_while_the_export_runs(running):
    from index.models import ExportPackage
    from labwitness.clock import utc_ms

    client, rt = running
    rt.exporter.exports.save(ExportPackage(id="live-pkg", report_no="JC-LIVE", created_ms=utc_ms(rt.clock.now()), actor="t"))
    r = client.post("/api/v1/exports/live-pkg/release-hold")
    assert r.status_code == 409 and "still being exported" in r.text


@pytest.mark.parametrize("now_ms, windows, codes", [
    (100, [("cam-a", 0, 50, 1.0)], []),
    (100, [("cam-a", 0, 150, 0.5)], ["window_not_over", "low_coverage"]),
    (100, [("cam-a", 0, 100, 0.95)], []),  # exactly at the bound: fine
    (100, [("cam-b", 0, 50, 0.0), ("cam-a", 0, 50, 0.9)], ["low_coverage", "no_footage"]),  # by camera
    (100, [("cam-a", 200, 300, 0.0)], ["window_not_over", "no_footage"]),  # wholly in the future
    # judged on the test itself when its windows are known: uncovered margins alone are no warning
    (100, [("cam-a", 0, 100, 0.5, 1.0)], []),
    (100, [("cam-a", 0, 100, 0.99, 0.9)], ["low_coverage"]),
    (100, [], []),
])
def test_export_warnings_table(now_ms, windows, codes):
    from api.export_checks import WindowFacts, export_warnings

    got = export_warnings(now_ms, [WindowFacts(*w) for w in windows])
    assert [w["code"] for w in got] == codes
    assert all(" / " in w["message"] for w in got)  # zh-CN / English


def test_an_export_of_an_unfinished_window_says_so_everywhere(running, tmp_path):
    """A test still running (its window ends in the future): the job status, the signed
    manifest and the UI's export panel all say the package cannot show all of it."""
    from fastapi.testclient import TestClient

    from api.evidence import verify_package
    from webtools import sign_in

    client, rt = running
    now = datetime.now(timezone.utc)
    _ingest(client, rt, "REC-FUT", "JC-FUTURE", now - timedelta(seconds=4), now + timedelta(minutes=30))
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > now.timestamp() * 1000 + 500, 30,
             what="some footage of the record")
    token = rt.tokens.create("insp", "inspector", "test")[1]
    insp = TestClient(client.app)
    insp.headers["Authorization"] = f"Bearer {token}"
    r = insp.post("/api/v1/reports/JC-FUTURE/exports")
    assert r.status_code == 202
    assert {w["code"] for w in r.json()["warnings"]} >= {"window_not_over", "low_coverage"}, r.json()
    pid = r.json()["id"]
    st = wait_for(lambda: (s := insp.get(f"/api/v1/exports/{pid}").json())["status"] != "running" and s, 120, what="export")
    assert st["status"] == "done", st
    codes = [w["code"] for w in st["warnings"]]
    assert codes[0] == "window_not_over" and "low_coverage" in codes
    assert any(w.get("camera_id") == "cam-api" for w in st["warnings"])
    z = tmp_path / "p.zip"
    z.write_bytes(insp.get(st["download_url"]).content)
    rep = verify_package(z)
    assert rep.ok and [w["code"] for w in rep.manifest["warnings"]] == codes  # signed with the package
    web = sign_in(client.app, token)
    web.cookies.set("lw_lang", "zh-CN")
    panel = web.get(f"/ui/exports/{pid}").text
    assert 'class="flash warning export-warnings"' in panel and 'data-code="window_not_over"' in panel
    assert "录像时段尚未结束" in panel
    audit = [e for e in client.get("/api/v1/audit").json() if e["action"] == "export.start"]
    assert "window_not_over" in audit[0]["detail"]["warnings"]
