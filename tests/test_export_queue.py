"""The export queue (docs/jobs.md): exports requested on one node are built by export workers
in other processes; a worker killed mid-export is replaced by another that finishes it; two
workers never build the same export.  Real PostgreSQL, real SeaweedFS, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlmodel import Session, select

from conftest import ACCESS, SECRET, wait_for
from clitools import lw

ROOT = Path(__file__).resolve().parents[1]
REPORT = "JC-Q-0001"
SEG_S = 2


def _settings_env(tmp: Path, seaweed, db_url: str, bucket: str) -> dict:
    env = dict(os.environ)
    env.update({"LABWITNESS_DATA_DIR": str(tmp / "data"), "LABWITNESS_DATABASE_URL": db_url,
                "LABWITNESS_S3_ENDPOINT": seaweed.endpoint, "LABWITNESS_S3_ACCESS_KEY": ACCESS,
                "LABWITNESS_S3_SECRET_KEY": SECRET, "LABWITNESS_S3_BUCKET": bucket, "LABWITNESS_RETENTION_JOBS": "false",
                "LABWITNESS_EXPORT_HEARTBEAT_S": "0.5", "LABWITNESS_EXPORT_STALE_S": "3", "LABWITNESS_EXPORT_POLL_S": "0.3",
                "PYTHONPATH": str(ROOT)})
    return env


class Node:
    """tests/noderunner.py as a process (a jobs node's export workers, or an API node)."""

    def __init__(self, env: dict, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "noderunner.py"), *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "ready", f"node did not start: {line}"
        self.worker = line[1] if len(line) > 1 else ""

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def node_a(tmp_path, seaweed, pg_url):
    """API node A (in this process) on PostgreSQL, with footage of report JC-Q-0001 stored:
    ``segments`` segments of 2 s, indexed, and a test record over them."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings
    from contenttools import SCENE, encode_fmp4, put_segment
    from index.models import Area
    from labwitness.clock import utc_ms

    env = _settings_env(tmp_path, seaweed, pg_url, "queue-footage")
    settings = load_settings(**{k[len("LABWITNESS_"):].lower(): v for k, v in env.items() if k.startswith("LABWITNESS_")})
    with Runtime(settings, recording=False) as rt:  # no export worker here: node A only serves the API
        rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")
        rt.registry.add_camera(rt.new_camera("cam-q", "rtsp://127.0.0.1:9/none", area_id="lixue", enabled=False), actor="test")
        clip = encode_fmp4(tmp_path / "seg.mp4", lambda t: SCENE.view(t), SEG_S, fps=5, gop=5)
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
        n = 12
        for i in range(n):
            put_segment(rt.store, rt.index, clip, "cam-q", start + timedelta(seconds=i * SEG_S), SEG_S, i)
        rt.records.upsert("REC-Q-1", {
            "report_no": REPORT, "commission_no": "WT-Q-0001", "project_name": "测试工程", "test_item": "钢筋拉伸",
            "sample_ids": ["GX-Q-00001"], "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
            "started_ms": utc_ms(start) + 1000, "ended_ms": utc_ms(start) + (n * SEG_S - 1) * 1000}, actor="test")
        (tmp_path / "lab.pub").write_bytes(rt.exporter.key.public_pem())
        with TestClient(create_app(settings, rt)) as client:
            _, token = rt.tokens.create("q-inspector", "inspector", "test")
            client.headers["Authorization"] = f"Bearer {token}"
            yield client, rt, env


def _status(client, pid: str) -> dict:
    r = client.get(f"/api/v1/exports/{pid}")
    assert r.status_code == 200, r.text
    return r.json()


def _download(client, pid: str, to: Path) -> Path:
    r = client.get(f"/api/v1/exports/{pid}/download")
    assert r.status_code == 200, r.text
    to.write_bytes(r.content)
    return to


def test_a_killed_worker_export_is_finished_by_another_and_verifies(node_a, tmp_path):
    from index.models import Hold

    client, rt, env = node_a
    slow = Node(env, "worker", "1.5")  # jobs node B: about 18 s for the twelve segments
    nodes = [slow]
    try:
        r = client.post(f"/api/v1/reports/{REPORT}/exports")
        assert r.status_code == 202, r.text
        pid = r.json()["id"]
        assert r.json()["state"] in ("queued", "running") and r.json()["status"] == "running"
        # B claims it and builds; node A sees its progress from the database
        st = wait_for(lambda: (s := _status(client, pid))["progress"] > 0.1 and s, 60, what="progress seen from node A")
        assert st["state"] == "running" and st["worker"] == slow.worker and st["attempts"] == 1, st
        other = Node(env, "worker")  # jobs node C, idle: it never takes an export whose worker beats
        nodes.append(other)
        st = _status(client, pid)
        assert st["worker"] == slow.worker and st["state"] == "running" and st["progress"] < 0.9, st
        slow.kill()  # SIGKILL mid-export
        killed_at = time.monotonic()
        assert _status(client, pid)["state"] == "running"  # nobody knows yet: the heartbeat goes stale first
        st = wait_for(lambda: (s := _status(client, pid))["attempts"] == 2 and s, 60, what="another worker's claim")
        took_over_s = time.monotonic() - killed_at
        st = wait_for(lambda: (s := _status(client, pid))["state"] in ("done", "failed") and s, 120, what="export done")
        done_s = time.monotonic() - killed_at
        print(f"\nexport take-over after SIGKILL: claimed again {took_over_s:.1f} s, done {done_s:.1f} s after the kill")
        assert st["state"] == "done" and st["worker"] == other.worker, st
        # the same export built uninterrupted by C: the same footage, byte for byte
        r2 = client.post(f"/api/v1/reports/{REPORT}/exports").json()["id"]
        st2 = wait_for(lambda: (s := _status(client, r2))["state"] in ("done", "failed") and s, 120, what="second export")
        assert st2["state"] == "done" and st2["attempts"] == 1
    finally:
        for n in nodes:
            n.stop()
    pkg, fresh = rt.exporter.get(pid), rt.exporter.get(r2)
    m1, m2 = json.loads(pkg.manifest), json.loads(fresh.manifest)
    assert [(f["name"], f["sha256"], f["size"]) for f in m1["files"]] == [(f["name"], f["sha256"], f["size"]) for f in m2["files"]]
    assert m1["created_at"] == datetime.fromtimestamp(pkg.created_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    zpath = _download(client, pid, tmp_path / "pkg.zip")
    with zipfile.ZipFile(zpath) as z:  # fixed member times: the request's, not the build's
        assert {i.date_time for i in z.infolist()} == {_zip_time(pkg.created_ms)}
    # offline verification of the package the second worker finished
    r = lw(["verify", str(zpath), "--public-key", str(tmp_path / "lab.pub")], env)
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    # one Hold row per held version, though two workers placed holds for it
    with Session(rt.index.engine) as s:
        holds = list(s.exec(select(Hold).where(Hold.package_id == pid)))
    assert holds and len({h.segment_id for h in holds}) == len(holds) and all(h.released_ms is None for h in holds)
    assert all(h.state == "placed" for h in holds)
    events = [e for e in client.get("/api/v1/audit", headers={"Authorization": f"Bearer {rt.tokens.create('q-admin', 'admin', 't')[1]}"}).json()
              if pid in json.dumps(e.get("detail", {}))]
    actions = [e["action"] for e in events]
    assert "export.start" in actions and actions.count("export.claim") == 2 and "export.done" in actions, actions
    claims = sorted(e["detail"]["attempt"] for e in events if e["action"] == "export.claim")
    assert claims == [1, 2]


def _zip_time(ms: int):
    from api.exporter import zip_time

    return zip_time(ms)


def test_two_workers_never_build_the_same_export(node_a):
    client, rt, env = node_a
    ids = [client.post(f"/api/v1/reports/{REPORT}/exports").json()["id"] for _ in range(6)]
    workers = [Node(env, "worker"), Node(env, "worker")]
    try:
        for pid in ids:
            st = wait_for(lambda pid=pid: (s := _status(client, pid))["state"] in ("done", "failed") and s, 180,
                          what=f"export {pid}")
            assert st["state"] == "done" and st["attempts"] == 1, st  # claimed once: never taken from a live worker
    finally:
        for w in workers:
            w.stop()
    admin = rt.tokens.create("q-admin2", "admin", "t")[1]
    claims = [e for e in client.get("/api/v1/audit?limit=500", headers={"Authorization": f"Bearer {admin}"}).json()
              if e["action"] == "export.claim"]
    by_pkg = {}
    for e in claims:
        by_pkg.setdefault(e["detail"]["package_id"], []).append(e["detail"]["worker"])
    assert sorted(by_pkg) == sorted(ids) and all(len(v) == 1 for v in by_pkg.values()), by_pkg
    assert {w.worker for w in workers} >= set(v[0] for v in by_pkg.values())


def test_claims_are_exclusive_fenced_and_taken_over_when_stale(index):
    """The queue's rules on both engines: SKIP LOCKED / compare-and-set claims, fenced writes.  Heartbeats
    are the database's clock (index.dbclock): the test's clock is SQLite's, and on PostgreSQL moves the
    server's clock on by as much as the test advanced it."""
    from index.dbclock import node_clock, server_clock, shifted
    from index.exports import ExportStore
    from index.models import ExportPackage

    now = [1_000_000]
    db_now = (shifted(server_clock, lambda: now[0] - 1_000_000) if index.engine.dialect.name == "postgresql"
              else node_clock(lambda: now[0]))
    store = ExportStore(index.engine, lambda: now[0], db_now=db_now)
    for i in range(3):
        store.save(ExportPackage(id=f"p{i}", report_no="JC-1", created_ms=now[0] + i, actor="t", status="queued"))
    got = [store.claim(f"w{i}", stale_ms=3000, max_attempts=3) for i in range(4)]
    assert [c.package_id for c in got[:3]] == ["p0", "p1", "p2"] and got[3] is None
    assert store.beat(got[0], 0.5) and store.get("p0").progress == 0.5
    now[0] += 10_000  # w0 went silent; w1 and w2 still beat
    assert store.beat(got[1]) and store.beat(got[2])
    again = store.claim("w9", stale_ms=3000, max_attempts=3)
    assert again is not None and again.package_id == "p0" and again.attempt == 2
    # the old holder comes back: every write it makes is refused
    assert not store.beat(got[0], 0.9)
    pkg = store.get("p0")
    pkg.status = "done"
    assert not store.finish(got[0], pkg) and store.get("p0").status == "running"
    assert store.finish(again, pkg) and store.get("p0").status == "done" and store.get("p0").claimed_by == "w9"
    # out of attempts: no more claims; recovery then fails it (index side: needing_release)
    now[0] += 10_000
    assert store.claim("w9", stale_ms=3000, max_attempts=1) is None
    assert {p.id for p in store.needing_release(3000, max_attempts=1)} == {"p1", "p2"}
    # a graceful stop hands the export back at once
    assert store.release_claim(got[1]) and store.get("p1").status == "queued"
    assert store.claim("w5", stale_ms=3000, max_attempts=3, package_id="p1").attempt == 2


def test_a_worker_whose_clock_runs_ahead_takes_no_live_export(pg_url):
    """Heartbeats are written and judged on the database's clock: a worker on a node whose clock runs 30 s
    ahead does not take over an export another worker (30 s behind) is beating, and a silent one is taken
    over once its heartbeat is stale by the database's clock -- by a worker 30 s behind too, not 30 s late."""
    from index.db import make_engine
    from index.exports import ExportStore
    from index.migrate import upgrade
    from index.models import ExportPackage

    engine = make_engine(pg_url)
    upgrade(engine)
    wall = lambda: int(time.time() * 1000)  # noqa: E731
    fast, slow = ExportStore(engine, lambda: wall() + 30_000), ExportStore(engine, lambda: wall() - 30_000)
    try:
        slow.save(ExportPackage(id="p", report_no="JC-1", created_ms=wall(), actor="t", status="queued"))
        mine = slow.claim("slow-1", stale_ms=1000, max_attempts=3)
        assert mine is not None
        for _ in range(4):  # beating for two stale bounds: never taken
            assert fast.claim("fast", stale_ms=1000, max_attempts=3) is None
            assert slow.beat(mine)
            time.sleep(0.5)
        # slow-1 goes silent: taken over once its heartbeat is a stale bound old, not 30 s later
        silent = time.monotonic()
        again = wait_for(lambda: slow.claim("slow-2", stale_ms=1000, max_attempts=3), 10, interval=0.05,
                         what="the silent export claimed again")
        assert again.attempt == 2 and 0.3 < time.monotonic() - silent < 3.0
        assert not slow.beat(mine)
    finally:
        engine.dispose()
