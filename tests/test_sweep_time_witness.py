"""The expiry sweep checks its clock against witnesses that do not share it (issue 14 §5), on real
components: SeaweedFS with Object Lock, both index databases, simulated ONVIF cameras on loopback.

The embedded profile is a SeaweedFS on the same host, whose ``Date`` is the host clock: a host clock
pushed forward moves it too.  :class:`SameHostStore` is the test's SeaweedFS with exactly that
property (its ``Date`` follows the sweep's clock), so that the old check — our clock against the
store's — passes as it would on a real installation whose clock was moved.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from api.secrets import CredentialCipher
from api.time_witnesses import CameraClockSource, time_sources
from index.coverage import CoverageStore
from index.models import Camera
from index.registry import Registry
from labwitness.clock import SystemClock, utc_ms
from retention import health as rh
from retention.sweep import SweepConfig, run_sweep
from retention.time_sources import SealTimeSource, StoreDateSource
from simulator.onvif import OnvifCameraSimulator
from storage.s3 import S3ObjectStore

from conftest import ACCESS, SECRET, free_port
from retentiontools import UTC, Fixture, ShiftedClock

pytestmark = pytest.mark.usefixtures("onvif_wsdls")

YEAR = timedelta(days=365)
USER, PASSWORD = "onvif", "0nvif-pass"


class SameHostStore(S3ObjectStore):
    """The test's SeaweedFS, its clock being the host's (as the embedded store's is): ``Date`` follows ``host_clock``."""

    def __init__(self, *a, host_clock, **kw) -> None:
        super().__init__(*a, **kw)
        self.host_clock = host_clock

    def server_time(self) -> datetime:
        real = super().server_time()  # a real round trip: the store must answer
        return real + timedelta(seconds=round((self.host_clock.now() - datetime.now(UTC)).total_seconds()))


@pytest.fixture
def fx(store, index, tmp_path) -> Fixture:
    return Fixture(store, index, tmp_path)


@pytest.fixture
def camera(wsd_port):
    started: list[OnvifCameraSimulator] = []

    def make(**kw) -> OnvifCameraSimulator:
        sim = OnvifCameraSimulator(discovery_port=wsd_port, multicast=False, username=USER, password=PASSWORD, **kw).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


class Lab:
    """The registry and credentials key of one test installation."""

    def __init__(self, fx: Fixture) -> None:
        self.cipher = CredentialCipher(Fernet.generate_key())
        self.registry = Registry(fx.index.engine, lambda: utc_ms(datetime.now(UTC)))

    def add(self, camera_id: str, xaddr: str | None, *, enabled: bool = True) -> None:
        self.registry.add_camera(Camera(id=camera_id, rtsp_url="rtsp://127.0.0.1:8554/live", enabled=enabled,
                                        onvif_xaddr=xaddr, username=USER, password_enc=self.cipher.encrypt(PASSWORD),
                                        created_ms=0), actor="test")


def same_host_store(fx: Fixture, seaweed, clock) -> SameHostStore:
    s = SameHostStore(seaweed.endpoint, ACCESS, SECRET, fx.store.bucket, host_clock=clock)
    s.check(create=False)
    return s


def health(fx: Fixture) -> tuple[str, list[dict], dict | None]:
    now_ms = utc_ms(datetime.now(UTC))
    facts = rh.gather(fx.index.engine, CoverageStore(fx.index.engine, lambda: now_ms), now_ms, segment_seconds=10,
                      read_timeout_s=10, retention_days=190, retention_enforced=True)
    status, problems = rh.classify(facts)
    return status, problems, rh.time_witness_view(facts.jobs)


def untouched(fx: Fixture, segs) -> bool:
    return all(fx.exists(s) and fx.row(s).status == "stored" for s in segs) and fx.findings() == []


def test_host_clock_a_year_ahead_is_refused_by_the_cameras_in_the_embedded_profile(fx, seaweed, camera):
    # footage recorded 7 months ago, locked (index and storage) for another month: a year ahead, all of it "expired"
    segs = [fx.put("cam-a", lock_s=30 * 86400) for _ in range(4)]
    ahead = ShiftedClock(YEAR)
    store = same_host_store(fx, seaweed, ahead)
    lab = Lab(fx)
    sim = camera(name="UTM cam")  # its clock is the real one
    lab.add("cam-a", sim.xaddr)
    lab.add("cam-down", f"http://127.0.0.1:{free_port()}/onvif/device_service")  # a camera that is down
    lab.add("cam-manual", None)  # added by RTSP URL: no ONVIF address, not asked
    cfg = SweepConfig(max_share=1.0)  # the share limit would hide the hole: the time check alone must hold

    # The hole: the store's Date is the host's clock, so the old check agrees with itself.
    old = run_sweep(store, fx.index.engine, ahead, SweepConfig(max_share=1.0, dry_run=True), actor="test",
                    witnesses=[StoreDateSource(store, independent=True)])
    assert old.status == "ok" and old.summary["would_delete"] == len(segs), old.summary

    res = run_sweep(store, fx.index.engine, ahead, cfg, actor="test",
                    witnesses=time_sources(store, lab.registry, lab.cipher, embedded_store=True, max_skew_s=120))
    assert res.status == "refused" and res.summary["reason"] == "clock_disagrees", res.summary
    msg = res.summary["message"]
    assert "cameras (independent) -365.0 d" in msg and "cam-a" in msg and "拒绝清理" in msg
    assert "refusing to delete anything" in msg
    w = {r["source"]: r for r in res.summary["time_witnesses"]}
    assert abs(w["cameras"]["offset_s"] + YEAR.total_seconds()) < 5 and w["cameras"]["independent"]
    assert "cam-down" in w["cameras"]["detail"] and "cam-manual" not in w["cameras"]["detail"]
    assert w["store"]["independent"] is False and abs(w["store"]["offset_s"]) < 3  # the host clock, agreeing with itself
    assert any(c.operation == "GetSystemDateAndTime" for c in sim.calls)
    assert untouched(fx, segs)  # nothing marked, nothing deleted, nothing found

    status, problems, view = health(fx)
    assert status == "critical", problems
    crit = [p for p in problems if p["code"] == "time_untrusted"]
    assert crit and crit[0]["level"] == "critical" and "cameras" in crit[0]["text"]
    assert view and view["verdict"] == "clock_disagrees" and {x["source"] for x in view["witnesses"]} == {"cameras", "store"}


def test_without_an_independent_witness_nothing_is_deleted_and_with_a_camera_the_sweep_proceeds(fx, seaweed, camera):
    fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))  # the bulk of the camera's footage, recent
    expired = [fx.put("cam-a") for _ in range(2)]  # really expired: a correct sweep deletes them
    fx.wait_expired()
    clock = SystemClock()
    store = same_host_store(fx, seaweed, clock)  # the embedded profile: the store's Date is no witness
    lab = Lab(fx)
    sources = time_sources(store, lab.registry, lab.cipher, embedded_store=True, max_skew_s=120)

    # (b) no camera with an ONVIF address: only the host clock speaks
    res = run_sweep(store, fx.index.engine, clock, SweepConfig(), actor="test", witnesses=sources)
    assert res.status == "refused" and res.summary["reason"] == "no_time_witness", res.summary
    assert "store: same host clock" in res.summary["message"] and "no enabled camera has an ONVIF address" in res.summary["message"]
    assert untouched(fx, expired)
    status, problems, view = health(fx)
    assert status == "critical" and any(p["code"] == "time_untrusted" for p in problems)
    assert view["verdict"] == "no_time_witness"

    # ... nor when the only camera is down
    lab.add("cam-down", f"http://127.0.0.1:{free_port()}/onvif/device_service")
    res = run_sweep(store, fx.index.engine, clock, SweepConfig(), actor="test", witnesses=sources)
    assert res.summary["reason"] == "no_time_witness" and "no camera answered" in res.summary["message"]
    assert untouched(fx, expired)

    # (c) a camera whose clock agrees: the sweep deletes what expired, as before
    sim = camera(name="UTM cam", clock_offset_s=1.5)
    lab.add("cam-a", sim.xaddr)
    res = run_sweep(store, fx.index.engine, clock, SweepConfig(), actor="test", witnesses=sources)
    assert res.status == "ok" and res.summary["deleted"] == 2, res.summary
    assert res.summary["time_verdict"] == "ok"
    cams = next(r for r in res.summary["time_witnesses"] if r["source"] == "cameras")
    assert abs(cams["offset_s"] - 1.5) < 1.5 and "cam-down" in cams["detail"]
    assert all(not fx.exists(s) and fx.row(s) is None for s in expired)
    status, problems, view = health(fx)
    assert not any(p["code"] == "time_untrusted" for p in problems) and view["verdict"] == "ok"


def test_one_camera_with_a_wrong_clock_neither_blocks_nor_fools_the_sweep(fx, camera):
    lab = Lab(fx)
    for i, off in enumerate((0.0, 2.0, -27 * YEAR.total_seconds())):  # the third was reset to 2000 by a power cut
        lab.add(f"cam-{i}", camera(name=f"cam {i}", clock_offset_s=off).xaddr)
    src = CameraClockSource(lab.registry, lab.cipher, agree_within_s=120)
    r = src.read(SystemClock())
    assert r.independent and abs(r.offset_s) < 1.5, r  # the median: cam-0 (0 s), between -27 years and +2 s
    assert "median of 3, 2 agree" in r.detail
    r = src.read(ShiftedClock(YEAR))
    assert abs(r.offset_s + YEAR.total_seconds()) < 5  # measured against the clock the sweep runs on


def test_cameras_are_asked_in_parallel_capped_and_with_their_credentials(fx, camera):
    lab = Lab(fx)
    good = camera(name="needs a token even for the time", quirks={"auth_preauth"})  # the stored password is used
    lab.add("cam-0", good.xaddr)
    for i in range(1, 4):
        lab.add(f"cam-{i}", camera(name=f"hangs {i}", quirks={"hang"}).xaddr)  # reads the request, never answers
    lab.add("cam-9", camera(name="not asked").xaddr)
    lab.add("cam-off", good.xaddr, enabled=False)  # disabled cameras are not asked
    src = CameraClockSource(lab.registry, lab.cipher, agree_within_s=120, max_cameras=4, timeout_s=1.0)
    t0 = SystemClock().monotonic()
    r = src.read(SystemClock())
    took = SystemClock().monotonic() - t0
    assert r.independent and abs(r.offset_s) < 1.5 and "median of 1, 1 agree" in r.detail, r
    assert all(f"cam-{i}" in r.detail for i in range(1, 4)) and "cam-9" not in r.detail
    assert took < 4.5, took  # three silent cameras cost one wait, not three (each: up to 2 x 1 s)
    assert any(c.operation == "GetSystemDateAndTime" and c.authenticated for c in good.calls)


def test_cli_sweep_and_health_use_the_same_witnesses(tmp_path, seaweed, camera):
    """`labwitness retention sweep` and `labwitness health` (real subprocesses, the runtime's wiring):
    cameras whose clocks are a year behind this host are the host a year ahead, as far as they can tell."""
    import json

    from index.db import make_engine, sqlite_url
    from index.migrate import upgrade
    from index.queries import IndexStore

    from clitools import env_for, lw
    from conftest import make_store

    store = make_store(seaweed, "cli-timewit")
    engine = make_engine(sqlite_url(tmp_path / "data" / "index.sqlite3"))
    upgrade(engine)
    fx = Fixture(store, IndexStore(engine), tmp_path)
    fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))
    expired = [fx.put("cam-a") for _ in range(2)]
    fx.wait_expired()
    registry = Registry(engine, lambda: utc_ms(datetime.now(UTC)))
    behind = [camera(name=f"behind {i}", clock_offset_s=-YEAR.total_seconds()) for i in range(2)]
    for i, sim in enumerate(behind):
        registry.add_camera(Camera(id=f"cam-{i}", rtsp_url="rtsp://127.0.0.1:8554/live", onvif_xaddr=sim.xaddr,
                                   created_ms=0), actor="test")
    env = env_for(tmp_path, seaweed, bucket="cli-timewit")

    r = lw(["retention", "sweep", "--json"], env)
    assert r.returncode == 3, (r.stdout, r.stderr[-2000:])  # refused
    out = json.loads(r.stdout)["summary"]
    assert out["reason"] == "clock_disagrees" and "cameras (independent) -365.0 d" in out["message"], out
    assert {w["source"]: w["independent"] for w in out["time_witnesses"] if "absent" not in w} == {"cameras": True, "store": True}
    # the seal job has not run in this installation yet: the newest seal is a witness that is absent, with why
    assert {w["source"]: w["absent"] for w in out["time_witnesses"] if "absent" in w} == {"newest_seal": "no seal written yet"}
    assert all(fx.exists(s) and fx.row(s).status == "stored" for s in expired)
    r = lw(["health", "--json"], env)
    rep = json.loads(r.stdout)
    assert r.returncode == 2 and rep["status"] == "critical", rep["alerts"]
    assert any(a["code"] == "time_untrusted" and "cameras" in a["text"] for a in rep["alerts"])
    assert rep["time_witnesses"]["verdict"] == "clock_disagrees"

    for sim in behind:  # the cameras' clocks are set right (here: cameras that were right all along)
        sim.clock_offset_s = 0.0
    r = lw(["retention", "sweep", "--json"], env)
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    assert json.loads(r.stdout)["summary"]["deleted"] == 2
    assert all(not fx.exists(s) for s in expired)
    rep = json.loads(lw(["health", "--json"], env).stdout)
    assert not any(a["code"] == "time_untrusted" for a in rep["alerts"]) and rep["time_witnesses"]["verdict"] == "ok"
    engine.dispose()


def test_the_newest_seal_catches_a_clock_pushed_forward_after_it(fx, seaweed):
    """With no camera answering, a host clock pushed a year past the newest seal is still caught:
    the seal job runs every interval, so the present lies within its span of the newest seal."""
    segs = [fx.put("cam-a", lock_s=30 * 86400) for _ in range(2)]
    ahead = ShiftedClock(YEAR)
    store = same_host_store(fx, seaweed, ahead)
    sealed_ms = utc_ms(datetime.now(UTC)) - 1800_000  # written half an hour ago, by the honest clock
    seal_source = SealTimeSource(lambda: sealed_ms, span_s=2 * 3600 + 15 * 60)
    res = run_sweep(store, fx.index.engine, ahead, SweepConfig(max_share=1.0), actor="test",
                    witnesses=[StoreDateSource(store, independent=False), seal_source])
    assert res.status == "refused" and res.summary["reason"] == "clock_disagrees", res.summary
    assert "newest_seal (same host clock) +365.0 d" not in res.summary["message"]  # the seal is behind, not ahead
    assert "newest_seal (same host clock) -365.0 d" in res.summary["message"], res.summary["message"]
    assert untouched(fx, segs)

    # an honest clock half an hour after the seal: the seal agrees, but it was stamped by this host's
    # clock, so on its own it is no independent witness
    honest = SystemClock()
    r = seal_source.read(honest)
    assert r.excess_s() == 0 and not r.independent
    res = run_sweep(same_host_store(fx, seaweed, honest), fx.index.engine, honest, SweepConfig(max_share=1.0),
                    actor="test", witnesses=[seal_source])
    assert res.summary["reason"] == "no_time_witness" and "newest_seal: same host clock" in res.summary["message"]
    # no seal yet: absent, with the reason
    assert SealTimeSource(lambda: None, span_s=60).read(honest).reason == "no seal written yet"
