"""Nothing of the evidence lives only in the database (issue 14 §2): every change to the
evidence tables is journaled through the outbox into locked ``journal/`` objects, and
``labwitness index rebuild`` restores the whole index from storage alone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from conftest import ACCESS, SECRET, free_port, wait_for
from journaltools import empty_database, journal_bytes, journal_entries, snapshot

RECORD = {"report_no": "JC-2026-0042", "commission_no": "WT-0042", "project_name": "某某大桥", "test_item": "混凝土抗压强度",
          "sample_ids": ["YP-1", "YP-2"], "area_ids": ["lixue"], "equipment_ids": ["UTM-01"], "operator": "张三"}
QUERY_SECRET = "q-secret-9f8e7d"


def _settings(tmp_path: Path, sw, db_url: str, **kw):
    from api.settings import load_settings

    return load_settings(
        data_dir=tmp_path / "data", database_url=db_url, s3_endpoint=sw.endpoint, s3_access_key=ACCESS,
        s3_secret_key=SECRET, s3_bucket="journal-footage", segment_seconds=1.0, report_margin_s=5,
        retention_jobs=False, journal_interval_s=3600, discovery_port=free_port(), discovery_interfaces="127.0.0.1",
        **kw)


def _client(app, rt, role: str = "admin"):
    from fastapi.testclient import TestClient

    c = TestClient(app)
    c.headers["Authorization"] = f"Bearer {rt.tokens.create(f'test-{role}', role, 'test')[1]}"
    return c


def _token(c) -> str:
    return c.headers["Authorization"].removeprefix("Bearer ")


def _put_record(ingest, record_id: str, start: datetime, end: datetime, **changes) -> int:
    r = ingest.put(f"/api/v1/test-records/{record_id}", json={
        **RECORD, **changes, "started_at": start.isoformat(), "ended_at": end.isoformat()})
    assert r.status_code in (200, 201), r.text
    return r.status_code


def _drop_index(db_url: str, engine_of) -> None:
    """The database disk is lost: a new SQLite file, an empty PostgreSQL database."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
    else:
        engine = engine_of(db_url)
        empty_database(engine)
        engine.dispose()


def test_index_rebuilt_from_storage_alone_equals_the_lost_one(tmp_path_factory, tmp_path, rtsp, db_url):
    """A lab's state built through the API (registry with credentials, test records with
    revisions, footage and gaps, exports with holds, audit events), journaled across a
    storage outage; the database is lost; the rebuild gives back every table and the same
    report footage; no secret ever reached the journal."""
    from api.app import create_app
    from api.runtime import Runtime
    from index.db import make_engine
    from labwitness.errors import StorageUnavailableError
    from retention.rebuild import run_rebuild
    from storage.seaweed import EmbeddedSeaweed

    sw = EmbeddedSeaweed(tmp_path_factory.mktemp("sw-journal"), ACCESS, SECRET, supervise=False).start()
    try:
        settings = _settings(tmp_path, sw, db_url)
        with Runtime(settings) as rt:
            app = create_app(settings, rt, sync_interval_s=0.5)
            admin, ingest = _client(app, rt), _client(app, rt, "ingest")
            with admin:
                assert admin.post("/api/v1/areas", json={"id": "lixue", "name": "力学室"}).status_code == 201
                assert admin.post("/api/v1/areas", json={"id": "hnt", "name": "混凝土室"}).status_code == 201
                r = admin.post("/api/v1/cameras", json={"id": "cam-live", "name": "万能试验机", "area_id": "lixue",
                                                        "rtsp_url": rtsp.url("/secure", "admin", "s3cret")})
                assert r.status_code == 201, r.text
                dead = f"rtsp://127.0.0.1:{free_port()}/x?user=u&password={QUERY_SECRET}"
                assert admin.post("/api/v1/cameras", json={"id": "cam-dead", "area_id": "hnt", "rtsp_url": dead}
                                  ).status_code == 201
                assert admin.patch("/api/v1/cameras/cam-live", json={"name": "万能试验机 UTM-01"}).status_code == 200
                assert admin.post("/api/v1/equipment", json={"id": "UTM-01", "name": "万能试验机", "area_id": "lixue",
                                                             "camera_ids": ["cam-live"]}).status_code == 201
                assert admin.post("/api/v1/cameras", json={"id": "cam-gone", "area_id": "hnt",
                                                           "rtsp_url": f"rtsp://127.0.0.1:{free_port()}/y"}).status_code == 201
                assert admin.delete("/api/v1/cameras/cam-gone").status_code == 204
                wait_for(lambda: len(list(rt.index.iter_segments("cam-live"))) >= 6, 60, what="recorded segments")
                segs = list(rt.index.iter_segments("cam-live"))
                start = datetime.fromtimestamp(segs[1].start_ms / 1000, timezone.utc)
                end = datetime.fromtimestamp(segs[-1].end_ms / 1000, timezone.utc)
                assert _put_record(ingest, "REC-1", start, end) == 201
                assert _put_record(ingest, "REC-1", start, end, operator="李四") == 200
                _put_record(ingest, "REC-2", start, end - timedelta(seconds=1), report_no="JC-2026-0043")

                # storage goes away: journal batches wait in the local spool, nothing is lost
                sw.pause()
                assert _put_record(ingest, "REC-1", start, end, operator="王五", test_item="混凝土抗压强度 28d") == 200
                assert admin.patch("/api/v1/cameras/cam-dead", json={"name": "压力机"}).status_code == 200
                assert rt.journaler.run_once() > 0
                with Session(rt.index.engine) as s:
                    assert s.exec(text("SELECT COUNT(*) FROM journal_outbox")).one()[0] == 0
                assert rt.documents.backlog()[0] >= 1
                journal = rt.health.report(refresh_coverage=False)["journal"]  # health shows where the batches wait
                assert journal["outbox_entries"] == 0 and journal["documents_waiting"] >= 1
                with pytest.raises(StorageUnavailableError):
                    rt.documents.upload_once()
                sw.resume()
                wait_for(lambda: rt.documents.backlog()[0] == 0, 60, what="spooled journal batches uploaded")
                wait_for(lambda: rt.recorder.uploader.backlog() == 0, 60, what="spooled footage uploaded")

                report = RECORD["report_no"]
                e1 = admin.post(f"/api/v1/reports/{report}/exports")
                assert e1.status_code == 202, e1.text
                done = wait_for(lambda: (s := admin.get(f"/api/v1/exports/{e1.json()['id']}").json())["status"] != "running"
                                and s, 120, what="export")
                assert done["status"] == "done", done
                e2 = admin.post("/api/v1/reports/JC-2026-0043/exports").json()["id"]
                wait_for(lambda: admin.get(f"/api/v1/exports/{e2}").json()["status"] != "running", 120, what="export 2")
                assert admin.post(f"/api/v1/exports/{e2}/release-hold").status_code == 200
                # cam-dead's camera comes up: its outage ends and is indexed as a gap with its reason
                assert admin.patch("/api/v1/cameras/cam-dead", json={"rtsp_url": rtsp.url("/live")}).status_code == 200
                wait_for(lambda: rt.index.gaps("cam-dead"), 60, what="cam-dead's gap, closed when it recorded")
                # recording stops (cameras disabled) so that the index holds still for the comparison
                for cam in ("cam-live", "cam-dead"):
                    assert admin.patch(f"/api/v1/cameras/{cam}", json={"enabled": False}).status_code == 200
                wait_for(lambda: not rt.recorder.workers(), 30, what="recorders to stop")
                wait_for(lambda: rt.recorder.uploader.backlog() == 0, 60, what="spool drained")
                before_json = admin.get(f"/api/v1/reports/{report}/footage").json()
                assert before_json["records"] and "REC-1" in json.dumps(before_json)
                cipher_texts = [c.password_enc for c in rt.registry.cameras() if c.password_enc] + \
                               [c.url_secrets_enc for c in rt.registry.cameras() if c.url_secrets_enc]
                token_hashes = [t.token_hash for t in rt.tokens.list()] + [_token(admin), _token(ingest)]
            head = rt.audit.verify()
            assert head.ok and head.unkeyed == 0 and head.keyed
        # the runtime's exit flushed the outbox and uploaded every document
        engine = make_engine(settings.db_url)
        before = snapshot(engine)
        with engine.connect() as c:
            assert c.execute(text("SELECT COUNT(*) FROM journal_outbox")).scalar() == 0
        engine.dispose()
        assert not list((settings.spool_path / "documents").glob("*.doc"))
        assert before["hold"] and any(h["released_ms"] for h in before["hold"]) and any(
            h["released_ms"] is None for h in before["hold"])
        assert len(before["test_record_revision"]) == 4 and before["gap"] and len(before["auditevent"]) >= 4
        assert {g["reason"] for g in before["gap"]} - {"unknown"}

        # no secret in any journal object: passwords, query secrets, their ciphertexts, token hashes
        from storage.s3 import S3ObjectStore

        store = S3ObjectStore(sw.endpoint, ACCESS, SECRET, settings.s3_bucket)
        store.check(create=False)
        blob = journal_bytes(store)
        assert blob.count(b'"kind":"revision"') >= 6
        for secret in ["s3cret", QUERY_SECRET, *cipher_texts, *token_hashes]:
            assert secret.encode() not in blob, f"secret {secret[:6]}… in the journal"
        kinds = {e["kind"] for _, e in journal_entries(store)}
        assert kinds == {"segment", "gap", "test_record_revision", "revision", "audit_event", "export_package", "hold"}

        # the database is lost; rebuild from storage alone
        _drop_index(settings.db_url, make_engine)
        with Runtime(settings, recording=False) as rt2:
            res = run_rebuild(rt2.store, rt2.index.engine, rt2.clock, actor="test")
            assert res.status == "ok", (res.summary, res.findings)
            assert res.summary["segments_added"] == 0  # every segment came from the journal, none from a HEAD
            after = snapshot(rt2.index.engine)
            for table in before:
                assert after[table] == before[table], table
            cams = {c.id: c for c in rt2.registry.cameras()}
            assert set(cams) == {"cam-live", "cam-dead"} and all(c.enabled for c in cams.values())
            assert not any(c.password_enc or c.url_secrets_enc for c in cams.values())
            assert rt2.audit.verify().ok
            app2 = create_app(settings, rt2, sync_interval_s=3600)
            with _client(app2, rt2) as admin2:
                assert admin2.get(f"/api/v1/reports/{report}/footage").json() == before_json
            again = run_rebuild(rt2.store, rt2.index.engine, rt2.clock, actor="test")  # idempotent
            assert again.status == "ok"
            after2 = snapshot(rt2.index.engine)
            assert after2["segment"] == before["segment"] and after2["auditevent"][:len(before["auditevent"])] == \
                before["auditevent"]
            # new rows get new ids after explicit ones (PostgreSQL sequences moved past them)
            ev = rt2.audit.append("test", "after.rebuild")
            assert ev.id > max(e["id"] for e in before["auditevent"])
    finally:
        sw.stop()
