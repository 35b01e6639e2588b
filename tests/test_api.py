"""REST API on a real runtime: S3 (SeaweedFS), SQLite/PostgreSQL index, real recorded segments."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import av
import pytest


from conftest import wait_for


def test_footage_by_time_media_with_range_and_health(running):
    client, rt = running
    now = datetime.now(timezone.utc)
    r = client.get("/api/v1/cameras/cam-api/footage",
                   params={"start": (now - timedelta(minutes=5)).isoformat(), "end": (now + timedelta(seconds=5)).isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["segments"]) >= 3 and 0 < body["coverage"] < 1
    seg = body["segments"][0]
    assert seg["lock_mode"] == "COMPLIANCE" and seg["start_local"].endswith("+08:00")
    assert datetime.fromisoformat(seg["retain_until"]) > now + timedelta(days=181)

    full = client.get(seg["media_url"])
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert len(full.content) == seg["size"]
    with av.open(io.BytesIO(full.content)) as c:
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) > 0
    part = client.get(seg["media_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{seg['size']}"
    tail = client.get(seg["media_url"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == full.content[-50:]
    bad = client.get(seg["media_url"], headers={"Range": f"bytes={seg['size'] + 10}-"})
    assert bad.status_code == 416

    h = client.get("/api/v1/health").json()
    assert h["status"] == "ok" and h["storage"]["retention_enforced"] is True
    assert h["cameras"]["cam-api"]["state"] == "recording"
    assert client.get("/metrics").text.count("labwitness_segments_written_total") >= 1
    page = client.get("/")
    assert page.status_code == 200 and "万能试验机" in page.text and "COMPLIANCE" in page.text
    assert "/media" not in page.text  # the public status page never links footage


def test_bad_requests_are_problem_json(running):
    client, _ = running
    cases = [
        ("/api/v1/cameras/nope/footage?start=2026-01-01T00:00:00Z&end=2026-01-01T01:00:00Z", 404),
        ("/api/v1/cameras/cam-api/footage?start=2026-01-01T01:00:00Z&end=2026-01-01T00:00:00Z", 422),
        ("/api/v1/cameras/cam-api/footage?start=yesterday&end=2026-01-01T00:00:00Z", 422),
        ("/api/v1/cameras/cam-api/footage?start=2026-01-01T00:00:00&end=2026-01-01T01:00:00", 422),  # naive time
        ("/api/v1/cameras/cam-api/footage?start=2026-01-01T00:00:00Z&end=2026-06-01T00:00:00Z", 422),  # too long
        ("/api/v1/segments/999999/media", 404),
        ("/api/v1/segments/abc/media", 422),
    ]
    for url, status in cases:
        r = client.get(url)
        assert r.status_code == status, (url, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == status and r.json()["detail"]


def test_camera_list_follows_registry(running):
    client, rt = running
    cams = client.get("/api/v1/cameras").json()
    assert [c["id"] for c in cams] == ["cam-api"] and cams[0]["area_id"] == "lixue"
    rt.registry.update_camera("cam-api", {"enabled": False}, actor="test")
    wait_for(lambda: "cam-api" not in rt.recorder.workers(), 10, what="recorder to follow the registry")
    assert client.get("/api/v1/cameras").json()[0]["state"] == "disabled"
    # disabled: recording stops, footage stays
    assert len(list(rt.index.iter_segments("cam-api"))) >= 3


def test_registry_rest_and_recording_follow_changes_live(running, rtsp):
    client, rt = running
    assert client.post("/api/v1/areas", json={"id": "hnt", "name": "混凝土室"}).status_code == 201
    r = client.post("/api/v1/cameras", json={"id": "cam-2", "name": "压力机", "area_id": "hnt",
                                             "rtsp_url": rtsp.url("/secure", "admin", "s3cret")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["has_password"] is True and body["username"] == "admin"
    assert "s3cret" not in r.text and "s3cret" not in body["rtsp_url"]
    # recording starts without a restart, with the decrypted credentials
    wait_for(lambda: len(list(rt.index.iter_segments("cam-2"))) >= 1, 30, what="cam-2 recording")

    # a wrong password set through the API is followed too: the camera goes to auth_failed
    assert client.patch("/api/v1/cameras/cam-2", json={"password": "wrong"}).status_code == 200
    wait_for(lambda: (w := rt.recorder.workers().get("cam-2")) is not None and "401" in w.status.last_error, 30,
             what="auth failure after password change")
    assert client.patch("/api/v1/cameras/cam-2", json={"password": "s3cret"}).status_code == 200
    assert client.patch("/api/v1/cameras/cam-2", json={"enabled": False}).status_code == 200
    wait_for(lambda: "cam-2" not in rt.recorder.workers(), 30, what="disabled camera to stop")
    assert client.delete("/api/v1/cameras/cam-2").status_code == 204
    assert client.get("/api/v1/cameras/cam-2").status_code == 404
    assert len(list(rt.index.iter_segments("cam-2"))) >= 1  # footage stays

    eq = client.post("/api/v1/equipment", json={"id": "UTM-01", "name": "万能试验机", "area_id": "lixue",
                                               "camera_ids": ["cam-api"]})
    assert eq.status_code == 201 and eq.json()["camera_ids"] == ["cam-api"]
    assert client.get("/api/v1/equipment").json()[0]["id"] == "UTM-01"

    revs = client.get("/api/v1/revisions", params={"entity": "camera", "entity_id": "cam-2"}).json()
    assert [r["action"] for r in revs] == ["delete", "update", "update", "update", "create"]
    assert revs[-1]["actor"].startswith("admin:test-admin@")
    assert "s3cret" not in json.dumps(revs) and "wrong" not in json.dumps(revs)


@pytest.mark.parametrize("payload, status", [
    ({"id": "../x", "rtsp_url": "rtsp://127.0.0.1/x"}, 422),
    ({"id": "ok", "rtsp_url": "http://127.0.0.1/x"}, 422),
    ({"id": "ok"}, 422),
    ({"id": "ok", "rtsp_url": "rtsp://127.0.0.1/x", "area_id": "nowhere"}, 422),  # a bad reference in the body
    ({"id": "cam-api", "rtsp_url": "rtsp://127.0.0.1/x"}, 409),
    ({"id": "ok", "from_discovery": "urn:uuid:unknown"}, 404),
    ({"id": "x" * 65, "rtsp_url": "rtsp://127.0.0.1/x"}, 422),
    ("not json at all", 422),
])
def test_bad_camera_payloads(running, payload, status):
    client, _ = running
    r = client.post("/api/v1/cameras", json=payload) if not isinstance(payload, str) else client.post(
        "/api/v1/cameras", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
