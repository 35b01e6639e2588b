"""Health on a young installation tells the truth: the storage growth is what the camera
really writes per second of recording (not the bytes so far over at least an hour), the
expiry sweep refusing a fresh index is information, and nothing recording is a warning.
A real recording labwitness, its REST health and the real sweep."""

from __future__ import annotations

import pytest

from index.coverage import CoverageStore
from labwitness.clock import DAY_MS, utc_ms
from retention import health as rh
from retention.sweep import run_sweep

from conftest import wait_for


def _own_rate_per_day(rt) -> float:
    segs = [s for s in rt.index.iter_segments("cam-api") if s.status == "stored"]
    return sum(s.size for s in segs) / sum(s.media_duration_ms for s in segs) * DAY_MS


def test_young_installation_growth_sweep_and_no_cameras(running):
    client, rt = running
    # seconds after the first segment: growth is the camera's own bytes per second x one day
    before = _own_rate_per_day(rt)
    h = client.get("/api/v1/health")
    assert h.status_code == 200, h.text
    growth = h.json()["storage"]["growth_bytes_per_day"]
    after = _own_rate_per_day(rt)
    assert growth == pytest.approx((before + after) / 2, rel=0.25)  # stored bytes / 1 h would be ~1000x lower

    # the runway follows from it at once
    now_ms = utc_ms(rt.clock.now())
    facts = rh.gather(rt.index.engine, CoverageStore(rt.index.engine, lambda: now_ms), now_ms, segment_seconds=1,
                      read_timeout_s=10, retention_days=190, retention_enforced=True, capacity=(10**12, 10**11))
    assert facts.storage.runway_days == pytest.approx(10**11 / facts.storage.growth_bytes_per_day, rel=0.01)
    assert facts.storage.runway_days == pytest.approx(10**11 / after, rel=0.25)

    # the sweep refuses the fresh index, as it must for six months: information, status unchanged
    res = run_sweep(rt.store, rt.index.engine, rt.clock, witnesses=rt.time_sources)
    assert res.status == "refused" and res.summary["reason"] == "index_fresh"
    rep = client.get("/api/v1/health").json()
    codes = {a["code"]: a["level"] for a in rep["alerts"]}
    assert codes.get("sweep_not_due") == "info" and "job_sweep" not in codes
    assert rep["status"] == "ok", rep["alerts"]

    # nothing enabled, nothing recorded: a warning
    assert client.patch("/api/v1/cameras/cam-api", json={"enabled": False}).status_code == 200
    wait_for(lambda: "cam-api" not in (rt.recorder.workers() if rt.recorder else {}), 30, what="recorder stopped")
    rep = client.get("/api/v1/health").json()
    assert rep["status"] == "warning" and rep["cameras"] == {}
    assert [a["code"] for a in rep["alerts"] if a["level"] != "info"] == ["no_cameras"]
