"""Test records in, footage per report out: ingest validation, revisions, lookup, stitched playback."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import av
import pytest

from conftest import wait_for


def _record(start: datetime, end: datetime, **kw) -> dict:
    body = {"report_no": "JC-2026-0001", "commission_no": "WT-2026-118", "project_name": "南宁某综合楼",
            "test_item": "钢筋拉伸", "sample_ids": ["GX-S-000123"], "area_ids": ["lixue"], "equipment_ids": [],
            "operator": "张三", "started_at": start.isoformat(), "ended_at": end.isoformat()}
    body.update(kw)
    return body


def _ingest_client(client, rt):
    from fastapi.testclient import TestClient

    _, token = rt.tokens.create("core-upload", "ingest", "test")
    c = TestClient(client.app)
    c.headers["Authorization"] = f"Bearer {token}"
    return c


def test_ingest_is_idempotent_and_keeps_every_revision(running):
    client, rt = running
    ingest = _ingest_client(client, rt)
    t0 = datetime.now(timezone.utc) - timedelta(minutes=10)
    r = ingest.put("/api/v1/test-records/REC-1", json=_record(t0, t0 + timedelta(minutes=5)))
    assert r.status_code == 201, r.text
    again = ingest.put("/api/v1/test-records/REC-1", json=_record(t0, t0 + timedelta(minutes=5)))
    assert again.status_code == 200 and again.json()["revision"] == 1  # unchanged: no new revision
    fixed = ingest.put("/api/v1/test-records/REC-1", json=_record(t0, t0 + timedelta(minutes=6), operator="李四"))
    assert fixed.json()["revision"] == 2
    got = client.get("/api/v1/test-records/REC-1").json()
    assert [v["revision"] for v in got["revisions"]] == [1, 2]
    assert got["revisions"][1]["before"]["operator"] == "张三" and got["revisions"][1]["after"]["operator"] == "李四"
    assert got["revisions"][1]["actor"] == "ingest:core-upload"
    # ingest may write records, nothing else
    assert ingest.get("/api/v1/test-records/REC-1").status_code == 403
    assert ingest.get("/api/v1/reports/JC-2026-0001/footage").status_code == 403


BAD_RECORDS = [
    ({"ended_at": "2026-01-01T00:00:00+00:00", "started_at": "2026-01-01T01:00:00+00:00"}, "after"),
    ({"area_ids": ["nowhere"]}, "nowhere"),
    ({"equipment_ids": ["NO-SUCH-UTM"]}, "NO-SUCH-UTM"),
    ({"sample_ids": ["bad id with spaces"]}, "sample_ids"),
    ({"sample_ids": ["../../etc/passwd"]}, "sample_ids"),
    ({"started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-10T00:00:00+00:00"}, "72"),
    ({"started_at": "2026-01-01T00:00:00", "ended_at": "2026-01-01T01:00:00"}, "timezone"),
    ({"area_ids": [], "equipment_ids": []}, "area"),
    ({"report_no": ""}, "report_no"),
    ({"operator": "x" * 5000}, "operator"),
]


def test_bad_records_get_a_clear_422(running):
    client, rt = running
    ingest = _ingest_client(client, rt)
    t0 = datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    for change, needle in BAD_RECORDS:
        r = ingest.put("/api/v1/test-records/REC-BAD", json=_record(t0, t0 + timedelta(hours=1), **change))
        assert r.status_code == 422, (change, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert needle.lower() in r.text.lower(), (needle, r.text)
    assert ingest.put("/api/v1/test-records/bad id", json=_record(t0, t0 + timedelta(hours=1))).status_code == 422
    results = ingest.post("/api/v1/test-records/batch", json=[
        {"record_id": "B-1", **_record(t0, t0 + timedelta(hours=1))},
        {"record_id": "B-2", **_record(t0, t0 + timedelta(hours=1), area_ids=["nowhere"])},
    ]).json()
    assert [(x["record_id"], x["status"]) for x in results] == [("B-1", 201), ("B-2", 422)]


def test_report_footage_and_stitched_playback(running):
    client, rt = running
    ingest = _ingest_client(client, rt)
    assert client.post("/api/v1/equipment", json={"id": "UTM-01", "name": "万能试验机", "area_id": "lixue",
                                                  "camera_ids": ["cam-api"]}).status_code == 201
    now = datetime.now(timezone.utc)
    # a record arriving *before* its footage is complete links all the same
    r = ingest.put("/api/v1/test-records/REC-2", json=_record(now - timedelta(seconds=3), now + timedelta(seconds=3),
                                                               area_ids=[], equipment_ids=["UTM-01"], report_no="JC-2"))
    assert r.status_code == 201, r.text
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > (now + timedelta(seconds=4)).timestamp() * 1000,
             30, what="footage past the record's end")
    body = client.get("/api/v1/reports/JC-2/footage").json()
    assert [c["camera_id"] for c in body["cameras"]] == ["cam-api"]
    cam = body["cameras"][0]
    assert body["margin_s"] == 300
    assert datetime.fromisoformat(cam["window_start"]) == now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(seconds=303)
    assert cam["window_start_local"].endswith("+08:00")
    assert cam["clips"] and 0 < cam["coverage"] < 1  # the margin reaches before recording began
    assert client.get("/api/v1/reports/NO-SUCH/footage").status_code == 404

    # stitched playback of exactly the record window, by stream copy
    start, end = now - timedelta(seconds=3), now + timedelta(seconds=3)
    media = client.get("/api/v1/cameras/cam-api/media", params={"start": start.isoformat(), "end": end.isoformat()})
    assert media.status_code == 200 and media.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(media.content)) as c:
        v = c.streams.video[0]
        pkts = [p for p in c.demux(v) if p.size]
        assert pkts[0].is_keyframe
        frames = sum(len(p.decode()) for p in pkts)
        dur = float((pkts[-1].dts - pkts[0].dts) * v.time_base)
    assert 5.5 <= dur <= 7.1, dur  # 6 s window, starting up to 1 GOP early
    assert frames == len(pkts)
    audit = client.get("/api/v1/audit").json()
    assert {"report.footage", "footage.play"} <= {e["action"] for e in audit}
