"""Test records in, footage per report out: ingest validation, revisions, lookup, stitched playback."""

from __future__ import annotations

import io
import random
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
    ({"sample_ids": ["bad\nid"]}, "sample_ids"),  # numbers are any printable text (labwitness.ids), no control characters
    ({"sample_ids": ["GX\u202eS-01"]}, "sample_ids"),  # a bidi override would show another number than stored
    ({"commission_no": " WT-1"}, "commission_no"),
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
    assert ingest.put("/api/v1/test-records/bad%09id", json=_record(t0, t0 + timedelta(hours=1))).status_code == 422
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
    from api.records_routes import ReportFootage

    ReportFootage.model_validate(body)  # the hand-encoded body has the documented shape
    assert [c["camera_id"] for c in body["cameras"]] == ["cam-api"]
    cam = body["cameras"][0]
    assert body["margin_s"] == 300
    from labwitness.clock import from_ms, utc_ms

    assert datetime.fromisoformat(cam["window_start"]) == from_ms(utc_ms(now - timedelta(seconds=3)) - 300_000)
    assert cam["window_start_local"].endswith("+08:00")
    assert cam["clips"] and 0 < cam["coverage"] < 1  # the margin reaches before recording began
    assert client.get("/api/v1/reports/NO-SUCH/footage").status_code == 404

    # paged (decision 48): a page of one clip, then clips_next to the end, is the full list
    full = client.get("/api/v1/reports/JC-2/footage", params={"clips": "all"}).json()["cameras"][0]
    assert len(full["clips"]) >= 2 and full["clips_total"] == len(full["clips"]) and full["clips_next"] is None
    one = client.get("/api/v1/reports/JC-2/footage", params={"clips": "1"}).json()["cameras"][0]
    # (still recording: later answers may hold more; test_report_runs compares paged and full answers exactly)
    assert set(one) == set(full) and len(one["clips"]) == 1 and one["clips_total"] >= full["clips_total"]
    assert sum(r["segments"] for r in one["runs"]) == one["clips_total"] and one["runs"][0]["media_url"]
    got, nxt = one["clips"], one["clips_next"]
    while nxt:
        page = client.get(nxt)
        assert page.status_code == 200, page.text
        got += page.json()["clips"]
        nxt = page.json()["clips_next"]
    assert got[:len(full["clips"])] == full["clips"]
    # a player seeking: the page from the clip playing at an instant
    mid = full["clips"][1]
    at = (utc_ms(datetime.fromisoformat(mid["start"])) + utc_ms(datetime.fromisoformat(mid["end"]))) // 2
    first_page = one["clips_next"].split("&after=")[0]
    assert client.get(first_page + f"&at={at}").json()["clips"][0] == mid
    assert client.get(one["clips_next"] + f"&at={at}").status_code == 422  # a cursor or an instant, not both
    for bad in ({"clips": "-1"}, {"clips": "x"}, {"clips": "5000"}):
        assert client.get("/api/v1/reports/JC-2/footage", params=bad).status_code == 422, bad
    assert client.get(one["clips_next"].replace("after=", "after=x")).status_code == 422
    past = one["clips_next"].split("&after=")[0] + "&after=1-9999999999999999999"  # beyond a 64-bit id
    assert client.get(past).status_code == 422
    other = one["clips_next"].replace("camera_id=cam-api", "camera_id=cam-elsewhere")
    assert client.get(other).status_code == 404  # only the report's own windows

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


def test_signed_export_verify_tamper_and_hold(running, tmp_path):
    import zipfile

    from fastapi.testclient import TestClient

    from api.evidence import verify_package

    client, rt = running
    ingest = _ingest_client(client, rt)
    now = datetime.now(timezone.utc)
    assert ingest.put("/api/v1/test-records/REC-X", json=_record(now - timedelta(seconds=4), now, report_no="JC-X")).status_code == 201
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > now.timestamp() * 1000 + 500, 30,
             what="footage past the record's end")
    _, itoken = rt.tokens.create("inspector-1", "inspector", "test")
    insp = TestClient(client.app)
    insp.headers["Authorization"] = f"Bearer {itoken}"
    r = insp.post("/api/v1/reports/JC-X/exports")
    assert r.status_code == 202, r.text
    pid = r.json()["id"]
    wait_for(lambda: insp.get(f"/api/v1/exports/{pid}").json()["status"] != "running", 120, what="export")
    st = insp.get(f"/api/v1/exports/{pid}").json()
    assert st["status"] == "done" and st["progress"] == 1.0, st
    z = insp.get(st["download_url"])
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    pkg = tmp_path / "pkg.zip"
    pkg.write_bytes(z.content)

    rep = verify_package(pkg, trusted_public_pem=rt.exporter.key.public_pem())
    assert rep.ok and rep.signature_valid and rep.files == {"cam-api.mp4": "ok"}, rep.problems
    m = rep.manifest
    assert m["report_no"] == "JC-X" and m["test_records"][0]["revision"] == 1 and m["files"][0]["sources"]
    assert m["verify_url"].endswith(f"/verify/{pid}")
    with zipfile.ZipFile(pkg) as zf:
        data = zf.read("cam-api.mp4")
        assert zf.read("verify-qr.png")[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(io.BytesIO(data)) as c:
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == m["files"][0]["frames"] > 0

    # every source segment version is now on legal hold, in storage itself
    for src in m["files"][0]["sources"]:
        assert rt.store.stat(src["key"], src["version_id"])[0].legal_hold is True
    held = client.get("/api/v1/reports/JC-X/footage").json()["cameras"][0]["clips"]
    assert any(c["on_hold"] for c in held)
    # the inspectors' page counts them per window, though it lists only the first clips
    from webtools import sign_in

    page = sign_in(client.app, itoken).get("/ui/report", params={"no": "JC-X"}).text
    assert f"{len({s['segment_id'] for s in m['files'][0]['sources']})} 段已合法保全" in page

    # public verify: no token needed, facts only
    from fastapi.testclient import TestClient as Anon

    pub = Anon(client.app).get(f"/verify/{pid}")
    assert pub.status_code == 200 and pub.json()["genuine"] is True and "media_url" not in pub.text
    assert Anon(client.app).get("/verify/00000000000000000000000000000000").status_code == 404
    assert "真实有效" in Anon(client.app).get(f"/verify/{pid}", headers={"Accept": "text/html"}).text

    # tampering is named: an altered video, an altered manifest, a foreign key
    def rewrite(dst, replace: dict[str, bytes]):
        with zipfile.ZipFile(pkg) as src, zipfile.ZipFile(dst, "w") as out:
            for n in src.namelist():
                out.writestr(n, replace.get(n, src.read(n)))
        return dst

    bad_video = rewrite(tmp_path / "v.zip", {"cam-api.mp4": data[:-10] + b"0123456789"})
    r1 = verify_package(bad_video)
    assert not r1.ok and r1.signature_valid and r1.files["cam-api.mp4"] == "altered"
    with zipfile.ZipFile(pkg) as zf:
        man = zf.read("manifest.json").replace(b'"JC-X"', b'"JC-Y"')
    r2 = verify_package(rewrite(tmp_path / "m.zip", {"manifest.json": man}))
    assert not r2.ok and not r2.signature_valid
    from api.evidence import SigningKey

    other = SigningKey.load(tmp_path / "other-lab")
    r3 = verify_package(pkg, trusted_public_pem=other.public_pem())
    assert not r3.ok and r3.trusted_key is False

    # only an admin releases holds; the release is audited
    assert insp.post(f"/api/v1/exports/{pid}/release-hold").status_code == 403
    rel = client.post(f"/api/v1/exports/{pid}/release-hold")
    assert rel.status_code == 200 and rel.json()["released"] >= 1
    for src in m["files"][0]["sources"]:
        assert rt.store.stat(src["key"], src["version_id"])[0].legal_hold is False
    actions = [e["action"] for e in client.get("/api/v1/audit").json()]
    assert {"export.start", "export.done", "export.download", "hold.release"} <= set(actions)
    assert rt.audit.verify().ok


def test_cli_export_then_offline_verify(running, tmp_path):
    import json
    import zipfile

    from clitools import lw

    client, rt = running
    ingest = _ingest_client(client, rt)
    now = datetime.now(timezone.utc)
    assert ingest.put("/api/v1/test-records/REC-CLI", json=_record(now - timedelta(seconds=3), now, report_no="JC-CLI")).status_code == 201
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > now.timestamp() * 1000 + 500, 30,
             what="footage past the record's end")
    s = rt.settings
    env = {**__import__("os").environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1]),
           "LABWITNESS_DATA_DIR": str(s.data_dir), "LABWITNESS_DATABASE_URL": s.db_url,
           "LABWITNESS_S3_ENDPOINT": s.s3_endpoint, "LABWITNESS_S3_ACCESS_KEY": s.s3_access_key,
           "LABWITNESS_S3_SECRET_KEY": s.s3_secret_key.get_secret_value(), "LABWITNESS_S3_BUCKET": s.s3_bucket}
    out = tmp_path / "evidence.zip"
    r = lw(["export", "JC-CLI", "--out", str(out)], env, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "/verify/" in r.stderr
    pub = tmp_path / "lab.pub"
    pub.write_bytes(rt.exporter.key.public_pem())
    ok = lw(["verify", str(out), "--public-key", str(pub), "--json"], env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["files"] == {"cam-api.mp4": "ok"}
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(bad, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            dst.writestr(n, data[:-1] + bytes([data[-1] ^ 1]) if n.endswith(".mp4") else data)
    r = lw(["verify", str(bad)], env)
    assert r.returncode == 1 and "cam-api.mp4: altered" in r.stderr + r.stdout
    assert lw(["export", "NO-SUCH-REPORT"], env).returncode == 1
    assert lw(["verify", str(tmp_path / "lab.pub")], env).returncode == 1  # not a zip: a clear error


@pytest.mark.parametrize("spans, merged", [
    ([(0, 10), (5, 20)], [(0, 20)]),  # overlapping tests: one window
    ([(0, 10), (10, 20)], [(0, 20)]),  # touching
    ([(0, 10), (100, 120)], [(0, 10), (100, 120)]),  # a 7-day and a 28-day test stay apart
    ([(100, 120), (0, 10), (5, 8)], [(0, 10), (100, 120)]),
])
def test_report_windows_merge_only_where_they_overlap(spans, merged):
    from index.records import merge_windows

    assert merge_windows(spans) == merged


_RNG = random.Random(7)


@pytest.mark.parametrize("ms", [0, 86_399_999, 951_782_400_000, 1_790_000_123_456, 4_102_444_799_999]
                         + [_RNG.randrange(0, 4_102_444_800_000) for _ in range(200)])
def test_clip_times_format_like_datetime(ms):
    """The report body formats times by integer arithmetic; it must agree with datetime."""
    from api.footage_json import iso_ms as _iso
    from labwitness.clock import from_ms

    assert _iso(ms) == from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    assert datetime.fromisoformat(_iso(ms)) == from_ms(ms)
