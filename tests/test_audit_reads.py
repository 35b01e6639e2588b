"""Every footage read is audited, whatever the request looks like: segment media with any
Range, the stitched camera media, an evidence package download, a thumbnail, and the
same reads through the web UI's session relay.  Real app, real recorded segments."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi.testclient import TestClient
from sqlmodel import Session

from index.audit import AuditLog
from index.models import CameraContentState
from labwitness.clock import utc_ms

from conftest import wait_for
from webtools import sign_in

#: every response type that carries footage (or a picture of it)
FOOTAGE_TYPES = {"video/mp4", "image/jpeg", "application/zip"}


def _rows(rt, actor: str, action: str | None = None) -> list:
    return [e for e in rt.audit.events(1000) if e.actor == actor and (action is None or e.action == action)]


def _reader(client, rt, name: str) -> TestClient:
    _, token = rt.tokens.create(name, "inspector", "test")
    c = TestClient(client.app)
    c.headers["Authorization"] = f"Bearer {token}"
    return c


def test_every_footage_read_is_audited_whatever_the_range(running):
    client, rt = running
    seg = next(rt.index.iter_segments("cam-api"))
    url, target = f"/api/v1/segments/{seg.id}/media", f"segment:{seg.id}"

    # a suffix range longer than the segment is the whole segment: it was served with no audit row
    suffix = _reader(client, rt, "suffix")
    r = suffix.get(url, headers={"Range": "bytes=-999999999999"})
    assert r.status_code == 206 and len(r.content) == seg.size
    assert [e.target for e in _rows(rt, "inspector:suffix", "footage.play")] == [target]

    middle = _reader(client, rt, "middle")
    assert middle.get(url, headers={"Range": "bytes=100-"}).status_code == 206
    assert len(_rows(rt, "inspector:middle", "footage.play")) == 1

    # the same person reading the same segment again, in any way, within ten minutes: still one row
    for rng in (None, "bytes=0-", "bytes=-10", "bytes=5-9", "bytes=100-"):
        assert suffix.get(url, headers={"Range": rng} if rng else {}).status_code in (200, 206)
    assert len(_rows(rt, "inspector:suffix", "footage.play")) == 1

    # a range that cannot be served reads nothing
    unserved = _reader(client, rt, "unserved")
    assert unserved.get(url, headers={"Range": f"bytes={seg.size + 10}-"}).status_code == 416
    assert _rows(rt, "inspector:unserved") == []

    # the web UI's bridge: a signed-in browser's <video> asks for the tail first
    _, wtoken = rt.tokens.create("browser", "inspector", "test")
    browser = sign_in(client.app, wtoken)
    r = browser.get(url, headers={"Range": "bytes=-999999999999"})
    assert r.status_code == 206 and len(r.content) == seg.size
    assert len(_rows(rt, "inspector:browser", "footage.play")) == 1


def test_every_footage_endpoint_audits_its_reads(running):
    client, rt = running
    # the footage endpoints this test reads; a new one must be added here (and audited)
    footage_routes = {path for path, ops in client.app.openapi()["paths"].items()
                      for op in ops.values() for resp in op.get("responses", {}).values()
                      if FOOTAGE_TYPES & set(resp.get("content", {}))}
    assert footage_routes == {"/api/v1/segments/{segment_id}/media", "/api/v1/cameras/{camera_id}/media",
                              "/api/v1/cameras/{camera_id}/thumbnail", "/api/v1/exports/{package_id}/download"}
    segs = list(rt.index.iter_segments("cam-api"))
    start, end = datetime.fromtimestamp(segs[0].start_ms / 1000, timezone.utc), \
        datetime.fromtimestamp(segs[-1].end_ms / 1000, timezone.utc)

    # stitched media: every request is its own read
    stitch = _reader(client, rt, "stitch")
    for _ in range(2):
        r = stitch.get("/api/v1/cameras/cam-api/media", params={"start": start.isoformat(), "end": end.isoformat()})
        assert r.status_code == 200 and r.content
    assert [e.target for e in _rows(rt, "inspector:stitch", "footage.play")] == ["camera:cam-api"] * 2

    # a thumbnail is a picture of the footage: audited, once per person, camera and ten minutes
    with Session(rt.index.engine) as s:
        s.add(CameraContentState(camera_id="cam-api", thumbnail_jpeg=b"\xff\xd8\xff\xe0 not really a jpeg",
                                 last_sample_ms=segs[-1].start_ms))
        s.commit()
    thumbs = _reader(client, rt, "thumbs")
    for _ in range(3):
        assert thumbs.get("/api/v1/cameras/cam-api/thumbnail").status_code == 200
    assert [e.target for e in _rows(rt, "inspector:thumbs", "footage.thumbnail")] == ["camera:cam-api"]

    # an evidence package download
    rt.records.upsert("REC-AUD", {
        "report_no": "JC-AUD-1", "commission_no": "WT-AUD-1", "project_name": "审计", "test_item": "钢筋拉伸",
        "sample_ids": ["S-1"], "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
        "started_ms": segs[0].start_ms, "ended_ms": segs[-1].end_ms}, actor="test")
    pkg = _reader(client, rt, "exporter")
    pid = pkg.post("/api/v1/reports/JC-AUD-1/exports").json()["id"]
    wait_for(lambda: pkg.get(f"/api/v1/exports/{pid}").json()["status"] != "running", 120, what="export")
    download = _reader(client, rt, "downloader")
    r = download.get(f"/api/v1/exports/{pid}/download")
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert [e.detail for e in _rows(rt, "inspector:downloader", "export.download")] == [f'{{"package_id": "{pid}"}}']


def test_a_read_is_audited_again_after_the_period(index):
    now = [utc_ms(datetime(2026, 11, 1, tzinfo=timezone.utc))]
    log = AuditLog(index.engine, lambda: now[0])
    read = ("inspector:a", "footage.play", "segment:1")
    assert log.append_once(*read) is not None
    now[0] += 9 * 60_000
    assert log.append_once(*read) is None  # covered by the first row
    assert log.append_once("inspector:b", "footage.play", "segment:1") is not None  # another person
    assert log.append_once("inspector:a", "footage.play", "segment:2") is not None  # another segment
    now[0] += 61_000
    assert log.append_once(*read) is not None  # ten minutes on: a new row
    now[0] -= 2 * 3_600_000  # a clock set back never stretches the cover
    assert log.append_once(*read) is not None
    assert [e.target for e in log.events()][::-1] == ["segment:1", "segment:1", "segment:2", "segment:1", "segment:1"]
    assert log.verify().ok
