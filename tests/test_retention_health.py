"""Retention health: facts from a planted index (SQLite and PostgreSQL), the pure
classification table, and the API/metrics surface on a running service."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session

from index.coverage import CoverageStore
from index.models import Camera, ContentEvent, Gap, IntegrityFinding, JobRun, Segment
from labwitness.clock import DAY_MS
from retention.health import (CameraFacts, Facts, SealFacts, StorageFacts, Thresholds, classify, gather, growth_per_day,
                              is_offline, offline_after_ms)

NOW = 1_790_035_200_000 + 10 * DAY_MS + 12 * 3_600_000  # noon, ten days after a UTC midnight
MIN = 60_000


def _seg(cam, start, n, dur=MIN, size=1000):
    return Segment(camera_id=cam, start_ms=start, end_ms=start + dur, media_duration_ms=dur, key=f"v1/{cam}/{n}.mp4",
                   version_id="v", size=size, sha256="0" * 64)


@pytest.fixture
def planted(index):
    """cam-ok: 9 days, one 30-minute gap 2 hours ago and a 1-hour blackout; cam-dead: stopped 3 days ago."""
    rows, n = [], 0
    for cam, until in (("cam-ok", NOW), ("cam-dead", NOW - 3 * DAY_MS)):
        t = NOW - 9 * DAY_MS
        while t < until:
            if cam == "cam-ok" and NOW - 2 * 3_600_000 <= t < NOW - 90 * MIN:
                t += MIN
                continue
            rows.append(_seg(cam, t, n))
            n += 1
            t += MIN
    with Session(index.engine) as s:
        s.add_all([Camera(id="cam-ok", rtsp_url="rtsp://x/", area_id="mech", created_ms=0, clock_offset_ms=8000),
                   Camera(id="cam-dead", rtsp_url="rtsp://x/", area_id="mech", created_ms=0),
                   Camera(id="cam-off", rtsp_url="rtsp://x/", enabled=False, created_ms=0)])
        s.add_all(rows)
        s.add(Gap(camera_id="cam-ok", start_ms=NOW - 2 * 3_600_000, end_ms=NOW - 90 * MIN, reason="timeout"))
        s.add(ContentEvent(camera_id="cam-ok", kind="blackout", start_ms=NOW - 5 * 3_600_000, end_ms=NOW - 4 * 3_600_000,
                           ongoing=False))
        s.add(IntegrityFinding(found_ms=NOW - 1000, kind="altered", camera_id="cam-ok", key="v1/cam-ok/7.mp4"))
        s.add(JobRun(job="verify", started_ms=NOW - 3_600_000, finished_ms=NOW - 3_500_000, status="ok",
                     summary=json.dumps({"checked": 50, "mismatches": 0})))
        s.add(JobRun(job="sweep", started_ms=NOW - 10 * DAY_MS, finished_ms=NOW - 10 * DAY_MS + 1000, status="ok"))
        s.commit()
    return index.engine


@pytest.mark.slow
def test_gather_facts_from_the_index(planted):
    cov = CoverageStore(planted, lambda: NOW)
    cov.refresh()
    f = gather(planted, cov, NOW, segment_seconds=60, read_timeout_s=10, retention_days=190, retention_enforced=True,
               capacity=(10**9, 10**9 - 30_000), spool_backlog=0)
    cams = {c.camera_id: c for c in f.cameras}
    assert set(cams) == {"cam-ok", "cam-dead"}  # disabled cameras are not judged
    ok, dead = cams["cam-ok"], cams["cam-dead"]
    assert ok.offline is False and ok.last_segment_age_s == 0.0
    assert ok.coverage["24h"] == pytest.approx(1 - 30 / 1440, abs=1e-6)
    assert ok.unusable["24h"] == pytest.approx(60 / 1440, abs=1e-6)
    assert ok.usable_coverage["24h"] == pytest.approx(1 - 90 / 1440, abs=1e-6)
    assert ok.coverage["7d"] == pytest.approx(1 - 30 / (7 * 1440), abs=1e-6)
    assert ok.coverage["183d"] == pytest.approx((9 * 1440 - 30) / (183 * 1440), abs=1e-6)
    assert ok.gaps_24h == [{"start_ms": NOW - 2 * 3_600_000, "end_ms": NOW - 90 * MIN, "reason": "timeout"}]
    assert ok.gap_reasons_7d == {"timeout": 1} and ok.oldest_age_days == 9.0 and ok.clock_offset_s == 8.0
    assert dead.offline is True and dead.coverage["24h"] == 0.0 and dead.last_segment_age_s == 3 * 86400
    assert f.findings_open == {"altered": 1} and f.findings_critical == 1
    assert f.jobs["verify"]["summary"] == {"checked": 50, "mismatches": 0} and f.jobs["sweep"]["status"] == "ok"
    assert f.storage.used_bytes == 1000 * (9 * 1440 - 30 + 6 * 1440)
    # each camera writes 1000 bytes per 60 s of footage: 1.44 MB a day, cam-dead (stopped, still enabled) included
    assert f.storage.growth_bytes_per_day == pytest.approx(2 * 1000 * 1440, rel=1e-6)
    assert f.storage.needed_days == pytest.approx(181, abs=0.01)
    status, problems = classify(f)
    codes = {(p["code"], p["camera"]) for p in problems}
    assert status == "critical"
    assert ("camera_offline", "cam-dead") in codes and ("clock_offset", "cam-ok") in codes
    assert ("integrity_altered", None) in codes and ("job_sweep_stale", None) in codes
    assert ("coverage_low", "cam-ok") in codes  # 97.9 % < 99 %


HOUR, MINUTE = 3_600_000, 60_000


def _facts(**kw) -> Facts:
    cam = CameraFacts("c", coverage={"24h": kw.pop("cov", 1.0)}, oldest_age_days=kw.pop("age", 30.0),
                      offline=kw.pop("offline", False), clock_offset_s=kw.pop("clock", 0.0),
                      unusable_ongoing=kw.pop("ongoing", []), last_segment_age_s=5.0, oldest_ms=kw.pop("oldest_ms", None))
    cams = kw.pop("cameras", [cam])
    storage = StorageFacts(kw.pop("enforced", True), capacity_bytes=kw.pop("capacity", 100), free_bytes=50,
                           runway_days=kw.pop("runway", None), needed_days=kw.pop("needed", 150.0))
    return Facts(NOW, 60, 190, cams, storage, kw.pop("findings", {}), kw.pop("critical", 0), kw.pop("jobs", {}),
                 kw.pop("backlog", 0), kw.pop("upload_error", ""), kw.pop("seals", SealFacts()))


@pytest.mark.parametrize("kw, status, code", [
    ({}, "ok", None),
    ({"offline": True}, "critical", "camera_offline"),
    ({"cov": 0.985}, "warning", "coverage_low"),
    ({"cov": 0.5}, "critical", "coverage_low"),
    ({"cov": 0.5, "age": 0.5}, "ok", None),  # a camera added today is not judged on 24 h coverage yet
    ({"clock": -6.0}, "warning", "clock_offset"),
    ({"ongoing": ["frozen"]}, "warning", "content_unusable"),
    ({"enforced": False}, "warning", "retention_not_enforced"),
    ({"runway": 100.0, "needed": 150.0}, "critical", "runway_short"),
    ({"runway": 170.0, "needed": 150.0}, "warning", "runway_short"),
    ({"runway": 500.0, "needed": 150.0}, "ok", None),
    ({"capacity": None}, "ok", "capacity_unknown"),  # shown, but does not change the status
    ({"findings": {"missing": 2}, "critical": 2}, "critical", "integrity_missing"),
    ({"findings": {"orphan_object": 1}, "critical": 0}, "warning", "integrity_orphan_object"),
    ({"jobs": {"sweep": {"status": "refused", "last_success_ms": NOW}}}, "warning", "job_sweep"),
    ({"jobs": {"integrity": {"status": "critical", "last_success_ms": NOW}}}, "critical", "job_integrity"),
    ({"jobs": {"verify": {"status": "ok", "last_success_ms": NOW - 3 * DAY_MS}}}, "warning", "job_verify_stale"),
    ({"jobs": {"verify": {"status": "ok", "last_success_ms": NOW - DAY_MS}}}, "ok", None),
    ({"backlog": 5, "upload_error": "S3 down"}, "warning", "upload_backlog"),
    ({"backlog": 5}, "ok", None),  # a backlog draining without errors is normal
    ({"cameras": []}, "warning", "no_cameras"),  # nothing is being recorded
    # the sweep refusing a young index is expected (every new installation, six months): information
    ({"jobs": {"sweep": {"status": "refused", "started_ms": NOW, "summary": {"reason": "index_fresh"}}}},
     "ok", "sweep_not_due"),
    ({"jobs": {"sweep": {"status": "refused", "started_ms": NOW, "summary": {"reason": "index_empty"}}}},
     "ok", "sweep_not_due"),  # it ran before anything was recorded
    ({"oldest_ms": NOW - DAY_MS, "jobs": {"sweep": {"status": "refused", "started_ms": NOW,
                                                      "summary": {"reason": "index_empty"}}}},
     "warning", "job_sweep"),  # footage older than the run, yet the index was empty: rows were lost
    # a refusal for time reasons is critical: the host clock is not to be trusted (issue 14 §5)
    ({"jobs": {"sweep": {"status": "refused", "started_ms": NOW, "summary": {"reason": "clock_skew"}}}},
     "critical", "time_untrusted"),
    ({"jobs": {"sweep": {"status": "refused", "started_ms": NOW,
                         "summary": {"reason": "clock_disagrees", "message": "cameras -365.0 d"}}}},
     "critical", "time_untrusted"),
    ({"jobs": {"sweep": {"status": "refused", "started_ms": NOW, "summary": {"reason": "no_time_witness"}}}},
     "critical", "time_untrusted"),
    ({"jobs": {"verify": {"status": "refused", "started_ms": NOW, "last_success_ms": NOW,
                          "summary": {"reason": "clock_skew"}}}},
     "warning", "job_verify"),  # only the sweep's refusal is about its clock
    # seals (hourly, 15 min grace): late after 2 h 15 min; a failed seal run is critical
    ({"seals": SealFacts(1.0, 15.0, NOW - 2 * HOUR, 7)}, "ok", None),
    ({"seals": SealFacts(1.0, 15.0, NOW - 2 * HOUR - 16 * MINUTE, 7)}, "critical", "seal_late"),
    ({"seals": SealFacts(0.0, 15.0, NOW - 30 * DAY_MS, 7)}, "ok", None),  # seals switched off
    ({"oldest_ms": NOW - 3 * HOUR, "seals": SealFacts(1.0, 15.0)}, "critical", "seal_late"),  # never sealed
    ({"oldest_ms": NOW - HOUR, "seals": SealFacts(1.0, 15.0)}, "ok", None),  # a new installation, first seal due
    ({"jobs": {"seal": {"status": "failed", "last_success_ms": NOW}}}, "critical", "job_seal"),
    ({"jobs": {"seal": {"status": "warning", "last_success_ms": NOW, "summary": {"witness_error": "x"}}}},
     "warning", "job_seal"),  # sealed, but not yet handed to the witness outbox
])
def test_classify_table(kw, status, code):
    got, problems = classify(_facts(**kw), Thresholds())
    assert got == status
    assert [p["code"] for p in problems] == ([code] if code else [])


MB = 1_000_000


@pytest.mark.parametrize("rates, per_day", [
    ({}, 0.0),  # nothing recorded yet
    ({"c": (1000, 60_000)}, 1000 * 1440),
    ({"c": (MB, 2_000)}, 43_200 * MB),  # 4 Mbit/s: 43.2 GB a day, known from one 2 s segment
    # ten minutes after the first start: 300 MB in 600 s of footage is 43.2 GB a day (stored bytes over an
    # installation age of at least one hour said 7.2 GB, a runway 6 times too long)
    ({"c": (300 * MB, 600_000)}, 43_200 * MB),
    ({"a": (1000, 60_000), "b": (3000, 60_000)}, 4000 * 1440),  # cameras add up
    ({"c": (1000, 0)}, 0.0),  # no media time: no rate, not a division by zero
])
def test_growth_per_day_table(rates, per_day):
    assert growth_per_day(rates) == pytest.approx(per_day, rel=1e-9)


@pytest.mark.parametrize("last_end_ms, offline", [
    (None, True),  # never stored a segment
    (NOW, False),
    (NOW - 130_000, False),  # 60 s segments: two lengths plus the 10 s read timeout, exactly
    (NOW - 130_001, True),  # a millisecond later
])
def test_is_offline_table(last_end_ms, offline):
    """The one "camera offline" rule that health, its gauges and the cameras page all use."""
    assert offline_after_ms(60.0, 10.0) == 130_000
    assert is_offline(last_end_ms, NOW, 60.0, 10.0) is offline


def test_retention_health_api_and_metrics(running):
    client, rt = running
    h = client.get("/api/v1/health/retention")
    assert h.status_code == 200, h.text
    body = h.json()
    assert body["status"] in ("ok", "warning") and body["storage"]["retention_enforced"] is True
    assert set(body["cameras"]["cam-api"]["coverage"]) == {"24h", "7d", "183d"}
    assert body["storage"]["runway_days"] is None or body["storage"]["runway_days"] > 0
    full = client.get("/api/v1/health").json()  # the export queue, nothing requested (test_health_export_queue)
    assert full["exports"] == {"queued": 0, "running": 0, "oldest_age_s": None, "warning_s": 1800.0}
    m = client.get("/metrics").text
    assert 'labwitness_camera_coverage_ratio{area=' in m and 'camera="cam-api"' in m
    assert "labwitness_export_queue_oldest_age_seconds 0.0" in m
    assert "labwitness_retention_enforced 1.0" in m and "labwitness_health_status" in m
    # every metric the shipped alert rules and dashboard use is really exported
    import re
    from pathlib import Path

    from deploytools import ALLOWED, DASHBOARD, RULES

    exported = set(re.findall(r"^# TYPE (labwitness_[a-z0-9_]+)", m, re.M))
    exported |= {n + s for n in exported for s in ("_bucket", "_sum", "_count")}
    used = set(re.findall(r"\blabwitness_[a-z0-9_]+", RULES.read_text() + Path(DASHBOARD).read_text()))
    assert used <= exported, f"used in deploy/ but not exported: {sorted(used - exported)}"
    assert ALLOWED <= exported | {"labwitness_job_last_success_timestamp_seconds", "labwitness_job_last_status",
                                  "labwitness_lock_verified_ratio"}


# -- the camera's OSD time against the footage's index time (issue 15) --------------------
@pytest.mark.parametrize("onvif, stream, warned, shown", [
    (None, None, False, None),  # nothing known: nothing said
    (0.4, None, False, None),
    (2.0, None, False, None),  # at the bound: an OSD's rounding and the ONVIF reading's ±0.5 s
    (2.3, None, True, "+2.3 s (ONVIF)"),
    (-95.0, None, True, "-95.0 s (ONVIF)"),
    (-95.0, 0.1, False, None),  # the stream's reports are the footage's own clock: they decide
    (0.2, -28800.0, True, "-28800.0 s (RTCP)"),  # a camera on factory time, found from its stream
    (None, 3.5, True, "+3.5 s (RTCP)"),
    (None, -2.01, True, "-2.0 s (RTCP)"),
])
def test_osd_time_warning(onvif, stream, warned, shown):
    cam = CameraFacts("utm-cam", coverage={"24h": 1.0}, oldest_age_days=30.0, last_segment_age_s=5.0,
                      clock_offset_s=onvif, stream_clock_offset_s=stream)
    status, problems = classify(_facts(cameras=[cam]))
    clock = [p for p in problems if p["code"] == "clock_offset"]
    assert bool(clock) == warned and status == ("warning" if warned else "ok")
    if warned:
        (p,) = clock
        assert p["camera"] == "utm-cam" and p["level"] == "warning"
        assert p["text"].startswith("utm-cam: 摄像机时钟偏差") and shown in p["text"] and "NTP" in p["text"]
        assert "OSD" in p["text"] and "labwitness camera time" in p["text"]
