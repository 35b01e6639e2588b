"""Helpers for the web UI tests: a small real labwitness (SeaweedFS, SQLite, no
recorders) with a camera, a report and an indexed segment, and browser-like sign-in."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

from conftest import ACCESS, SECRET, free_port, wait_for
from index.models import Area, Equipment, Segment
from labwitness.clock import utc_ms

CAMERA_PASSWORD = "Cam-Pa55word-never-shown"
REPORT = "JC-W-0001"
ROLES = ("admin", "inspector", "operations", "ingest")


@contextmanager
def web_runtime(tmp_path, seaweed, **settings_kw):
    """Runtime without recorders (storage + SQLite index) and its app; seeded data."""
    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                             s3_secret_key=SECRET, s3_bucket="web-footage", retention_jobs=False, **settings_kw)
    with Runtime(settings, recording=False) as rt:
        rt.start_export_workers()  # what a jobs node runs: exports requested through the UI get built
        seed(rt)
        app = create_app(settings, rt)
        with TestClient(app) as client:
            tokens = {r: rt.tokens.create(f"web-{r}", r, "test")[1] for r in ROLES}
            yield client, rt, tokens


def seed(rt) -> dict:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")
    rt.registry.add_camera(rt.new_camera("cam-web", f"rtsp://admin:{CAMERA_PASSWORD}@127.0.0.1:8554/live",
                                         name="万能试验机 UTM-01", area_id="lixue"), actor="test")
    rt.registry.put_equipment(Equipment(id="UTM-01", name="万能试验机", area_id="lixue", created_ms=0), ["cam-web"], actor="test")
    start = now - timedelta(minutes=10)
    seg = rt.index.add_segment(Segment(
        camera_id="cam-web", start_ms=utc_ms(start), end_ms=utc_ms(start) + 60_000, media_duration_ms=60_000,
        key="v1/cam-web/fake.mp4", version_id="v1", size=1000, sha256="0" * 64, retain_until_ms=utc_ms(now + timedelta(days=190)),
        lock_mode="COMPLIANCE", codec="h264", width=640, height=360))
    rt.records.upsert("REC-W-1", {
        "report_no": REPORT, "commission_no": "WT-W-0001", "project_name": "测试工程", "test_item": "钢筋拉伸",
        "sample_ids": ["GX-W-00001"], "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
        "started_ms": utc_ms(start) + 5_000, "ended_ms": utc_ms(start) + 50_000}, actor="test")
    rt.records.upsert("REC-W-1", {
        "report_no": REPORT, "commission_no": "WT-W-0001", "project_name": "测试工程", "test_item": "钢筋拉伸（复检）",
        "sample_ids": ["GX-W-00001"], "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
        "started_ms": utc_ms(start) + 5_000, "ended_ms": utc_ms(start) + 55_000}, actor="test")
    return {"segment_id": seg.id}


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def browser(app) -> TestClient:
    return TestClient(app, follow_redirects=False)


def sign_in(app, token: str) -> TestClient:
    """A fresh browser that signs in with ``token`` through the form; returns it."""
    c = browser(app)
    page = c.get("/login")
    assert page.status_code == 200
    r = c.post("/login", data={"csrf": csrf_of(page.text), "token": token, "next": ""})
    c.last_login = r
    return c


@contextmanager
def served(app, port: int | None = None):
    """``app`` on a loopback port (``port``, or a free one), uvicorn in a thread, for a real
    browser; yields its base URL and stops it afterwards."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 20, what="uvicorn")
    assert thread.is_alive(), "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
