"""Who may call what (every endpoint x every role), and the tamper-evident audit log."""

from __future__ import annotations

import json
import re
import sqlite3

from fastapi.testclient import TestClient

ROLES = ("admin", "inspector", "operations", "ingest")
# (method, path) -> roles besides admin that may call it; "public" = no token needed
ALLOWED: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/api/v1/health"): {"operations"},
    ("GET", "/api/v1/health/retention"): {"operations"},
    ("GET", "/api/v1/compliance"): {"operations"},
    ("GET", "/api/v1/cameras/{camera_id}/footage"): {"inspector"},
    ("GET", "/api/v1/cameras/{camera_id}/media"): {"inspector"},
    ("GET", "/api/v1/segments/{segment_id}/media"): {"inspector"},
    ("GET", "/api/v1/areas"): {"inspector", "operations"},
    ("POST", "/api/v1/areas"): set(),
    ("GET", "/api/v1/cameras"): {"inspector", "operations"},
    ("GET", "/api/v1/cameras/{camera_id}"): {"inspector", "operations"},
    ("GET", "/api/v1/cameras/{camera_id}/thumbnail"): {"inspector", "operations"},
    ("POST", "/api/v1/cameras"): set(),
    ("PATCH", "/api/v1/cameras/{camera_id}"): set(),
    ("DELETE", "/api/v1/cameras/{camera_id}"): set(),
    ("GET", "/api/v1/cameras/{camera_id}/time"): set(),  # contacts the camera with its stored credentials
    ("POST", "/api/v1/cameras/{camera_id}/time/ntp"): set(),
    ("POST", "/api/v1/cameras/{camera_id}/time/sync"): set(),
    ("GET", "/api/v1/equipment"): {"inspector", "operations"},
    ("POST", "/api/v1/equipment"): set(),
    ("POST", "/api/v1/discovery/scan"): set(),
    ("GET", "/api/v1/revisions"): set(),
    ("POST", "/api/v1/tokens"): set(),
    ("GET", "/api/v1/tokens"): set(),
    ("DELETE", "/api/v1/tokens/{token_id}"): set(),
    ("GET", "/api/v1/audit"): set(),
    ("PUT", "/api/v1/test-records/{record_id}"): {"ingest"},
    ("POST", "/api/v1/test-records/batch"): {"ingest"},
    ("GET", "/api/v1/test-records/{record_id}"): {"inspector"},
    ("GET", "/api/v1/reports/{report_no}/footage"): {"inspector"},
    ("GET", "/api/v1/reports/{report_no}/footage/clips"): {"inspector"},
    ("POST", "/api/v1/reports/{report_no}/exports"): {"inspector"},
    ("GET", "/api/v1/exports/{package_id}"): {"inspector"},
    ("GET", "/api/v1/exports/{package_id}/download"): {"inspector"},
    ("POST", "/api/v1/exports/{package_id}/release-hold"): set(),
    ("GET", "/verify/{package_id}"): "public",
    ("GET", "/metrics"): {"operations"},
    ("GET", "/"): "public",
    ("GET", "/.well-known/labwitness-keys.json"): "public",
}
PARAMS = {"camera_id": "nope", "segment_id": "999999", "token_id": "999999", "record_id": "R-none",
          "report_no": "NO-REPORT", "package_id": "0" * 32}
QUERY = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z", "camera_id": "nope", "window_start": "0"}
BODY = {"POST /api/v1/discovery/scan": {"timeout": 0.2, "multicast": False, "hosts": []}}


def test_every_endpoint_every_role(running):
    client, rt = running
    tokens = {r: rt.tokens.create(f"matrix-{r}", r, "test")[1] for r in ROLES}
    # every operation in the OpenAPI schema, plus the two kept out of it
    routes = {(m.upper(), path) for path, ops in client.app.openapi()["paths"].items() for m in ops}
    routes |= {("GET", "/metrics"), ("GET", "/")}
    assert routes == set(ALLOWED), f"routes without an expectation: {routes ^ set(ALLOWED)}"
    anon = TestClient(client.app)
    # wrong tokens are limited per source address (tests/test_rate_limit.py): each endpoint's come from their own
    guessers = (TestClient(client.app, client=(f"192.0.2.{i}", 50000)) for i in range(1, 255))
    for (method, path), allowed in sorted(ALLOWED.items()):
        url = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)
        kw = {"params": QUERY, "json": BODY.get(f"{method} {path}", {})}
        callers = {r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()}
        callers["none"] = {}
        callers["bad"] = {"Authorization": "Bearer lw_not-a-real-token"}
        via = dict.fromkeys(callers, anon) | {"bad": next(guessers)}
        for who, headers in callers.items():
            r = via[who].request(method, url, headers=headers, **kw)
            assert r.status_code < 500, (method, path, who, r.status_code, r.text[:300])
            ok = allowed == "public" or who == "admin" or (isinstance(allowed, set) and who in allowed)
            if ok:
                assert r.status_code not in (401, 403), (method, path, who, r.status_code, r.text[:300])
            elif who in ("none", "bad"):
                assert r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer", (method, path, who)
            else:
                assert r.status_code == 403, (method, path, who, r.status_code)
    # a revoked token stops working at once
    tid = next(t.id for t in rt.tokens.list() if t.name == "matrix-inspector")
    assert client.delete(f"/api/v1/tokens/{tid}").status_code == 200
    assert anon.get("/api/v1/areas", headers={"Authorization": f"Bearer {tokens['inspector']}"}).status_code == 401


def test_audit_chain_detects_altered_and_removed_events(running, tmp_path):
    client, rt = running
    for i in range(5):
        rt.audit.append("inspector:x", "footage.list", f"cam-{i}", {"i": i}, "inspector")
    rep = rt.audit.verify()
    assert rep.ok and rep.events >= 5
    head = rep.head
    from sqlmodel import Session, select

    from index.models import AuditEvent

    with Session(rt.index.engine) as s:
        ev = s.exec(select(AuditEvent).where(AuditEvent.target == "cam-2")).one()
        ev.actor = "someone-else"  # an edit made straight in the database
        s.add(ev)
        s.commit()
        bad = rt.audit.verify()
        assert not bad.ok and bad.broken_at == ev.id and "altered" in bad.reason
        ev.actor = "inspector:x"
        s.add(ev)
        s.commit()
        assert rt.audit.verify().ok
        victim = s.exec(select(AuditEvent).where(AuditEvent.target == "cam-3")).one()
        s.delete(victim)
        s.commit()
        gone = rt.audit.verify()
        assert not gone.ok and gone.broken_at == victim.id + 1
    # a cut tail is caught against the last hash kept
    assert not rt.audit.verify(expected_head="f" * 64).ok
    assert rt.audit.verify(expected_head=head).broken_at is not None


def test_cli_tokens_audit_and_csv_import(tmp_path, seaweed):
    from clitools import env_for, lw
    env = env_for(tmp_path, seaweed)
    assert lw(["area", "add", "--id", "lixue", "--name", "力学室"], env).returncode == 0
    t = json.loads(lw(["token", "create", "--name", "core", "--role", "ingest", "--json"], env).stdout)
    assert t["token"].startswith("lw_") and t["role"] == "ingest"
    assert lw(["token", "create", "--name", "x", "--role", "root"], env).returncode == 2
    listed = json.loads(lw(["token", "list", "--json"], env).stdout)
    assert listed[0]["prefix"] == t["token"][:6] and t["token"] not in json.dumps(listed)
    csv_file = tmp_path / "records.csv"
    csv_file.write_text(
        "record_id,report_no,commission_no,project_name,test_item,sample_ids,area_ids,equipment_ids,operator,started_at,ended_at\n"
        "R1,JC-1,WT-1,综合楼,钢筋拉伸,S-1;S-2,lixue,,张三,2026-11-01T08:00:00+08:00,2026-11-01T08:30:00+08:00\n"
        "R2,JC-2,WT-2,综合楼,混凝土抗压,S-3,nowhere,,李四,2026-11-01T09:00:00+08:00,2026-11-01T09:30:00+08:00\n"
        "R3,JC-3,WT-3,综合楼,混凝土抗压,S-4,lixue,,李四,2026-11-01T10:00:00+08:00,2026-11-01T09:30:00+08:00\n",
        encoding="utf-8")
    r = lw(["records", "import", str(csv_file), "--json"], env)
    assert r.returncode == 1  # some rows failed
    res = {x["record_id"]: x for x in json.loads(r.stdout)}
    assert res["R1"]["status"] == "created" and res["R2"]["status"] == "error" and "nowhere" in res["R2"]["error"]
    assert res["R3"]["status"] == "error" and res["R3"]["line"] == 4
    assert json.loads(lw(["records", "import", str(csv_file), "--json"], env).stdout)[0]["status"] == "unchanged"
    ok = lw(["audit", "verify", "--json"], env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    db = sqlite3.connect(tmp_path / "data" / "index.sqlite3")
    db.execute("UPDATE auditevent SET detail = '{}' WHERE id = (SELECT MIN(id) FROM auditevent)")
    db.commit()
    db.close()
    bad = lw(["audit", "verify"], env)
    assert bad.returncode == 1 and "tampered" in bad.stderr


def test_oversized_and_traversal_inputs_are_refused(running):
    client, rt = running
    big = "x" * (2 << 20)
    r = client.post("/api/v1/areas", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    r = client.put("/api/v1/test-records/R1", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    for url in ("/api/v1/test-records/..%2F..%2Fetc%2Fpasswd", "/api/v1/cameras/..%2Fsecret/footage?start=2026-01-01T00:00:00Z&end=2026-01-01T01:00:00Z",
                "/api/v1/reports/..%2F..%2Fx/footage", "/api/v1/exports/..%2F..%2Findex.sqlite3/download"):
        method = client.put if "test-records" in url else client.get
        r = method(url, json={}) if method is client.put else method(url)
        assert r.status_code in (404, 422), (url, r.status_code, r.text[:200])
        assert "root:" not in r.text
    # a camera id can never become an object key outside its prefix
    r = client.post("/api/v1/cameras", json={"id": "../../x", "rtsp_url": "rtsp://127.0.0.1/x"})
    assert r.status_code == 422


def test_bootstrap_admin_token_only_on_first_start(tmp_path, seaweed):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings
    from conftest import ACCESS, SECRET

    kw = dict(data_dir=tmp_path / "d", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS, s3_secret_key=SECRET,
              s3_bucket="boot-footage", bootstrap_admin_token="lw_bootstrap-secret-0123456789-abcdefghij")
    with Runtime(load_settings(**kw), recording=False) as rt:
        with TestClient(create_app(rt.settings, rt)) as c:
            r = c.post("/api/v1/tokens", json={"name": "ops", "role": "operations"},
                       headers={"Authorization": "Bearer lw_bootstrap-secret-0123456789-abcdefghij"})
            assert r.status_code == 201
            boot_id = next(t.id for t in rt.tokens.list() if t.name == "bootstrap-admin")
            assert c.delete(f"/api/v1/tokens/{boot_id}", headers={"Authorization": "Bearer lw_bootstrap-secret-0123456789-abcdefghij"}).status_code == 200
    # a later start with the variable still set does not bring the revoked token back
    with Runtime(load_settings(**kw), recording=False) as rt:
        assert rt.tokens.lookup("lw_bootstrap-secret-0123456789-abcdefghij") is None
