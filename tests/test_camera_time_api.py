"""A registered camera's clock from the outside: REST (roles, audit, errors), the web UI
(CSRF forms, the camera list's warning), health, the CLI, against a simulated ONVIF camera
over real SOAP/HTTP; and the stream's own clock (RTCP) reaching the API from a live recorder."""

from __future__ import annotations

import json

import pytest

from simulator.onvif import OnvifCameraSimulator

from clitools import env_for, lw
from conftest import free_port
from webtools import csrf_of, sign_in, web_runtime

USER, PASSWORD = "onvif", "0nvif-Secret-77"

pytestmark = pytest.mark.usefixtures("onvif_wsdls")


@pytest.fixture
def lab(tmp_path, seaweed):
    """A web runtime (no recorders) with camera ``onvif-cam``: ONVIF address of a simulated camera
    whose clock is 5 minutes behind, credentials stored encrypted, RTSP port closed (no recording)."""
    sim = OnvifCameraSimulator(name="UTM cam", username=USER, password=PASSWORD, clock_offset_s=-300.0,
                               discovery_port=free_port(), multicast=False).start()
    try:
        with web_runtime(tmp_path, seaweed) as (client, rt, tokens):
            rt.registry.add_camera(rt.new_camera("onvif-cam", f"rtsp://127.0.0.1:{free_port()}/live", username=USER,
                                                 password=PASSWORD, area_id="lixue", onvif_xaddr=sim.xaddr,
                                                 clock_offset_ms=-300_000), actor="test")
            client.headers["Authorization"] = f"Bearer {tokens['admin']}"
            yield client, rt, tokens, sim
    finally:
        sim.stop()


def _alerts(rt, code: str = "clock_offset") -> list[dict]:
    return [a for a in rt.health.report()["alerts"] if a["code"] == code]


def test_rest_read_set_ntp_and_sync(lab):
    client, rt, tokens, sim = lab
    # the camera list and health both say the OSD time is off, and what to do
    view = client.get("/api/v1/cameras/onvif-cam").json()
    assert view["clock_warning"] is True and view["stream_clock_offset_s"] is None
    (alert,) = [a for a in _alerts(rt) if a["camera"] == "onvif-cam"]
    assert "-300.0 s (ONVIF)" in alert["text"] and "NTP" in alert["text"]
    cams = rt.health.report()["cameras"]
    assert cams["onvif-cam"]["osd_offset_warning"] and cams["onvif-cam"]["osd_offset_source"] == "ONVIF"

    r = client.get("/api/v1/cameras/onvif-cam/time")
    assert r.status_code == 200, r.text
    got = r.json()
    assert abs(got["clock_offset_s"] + 300) < 0.6 and got["date_time_type"] == "NTP" and got["ntp_servers"] == []
    for role in ("inspector", "operations"):
        h = {"Authorization": f"Bearer {tokens[role]}"}
        assert client.get("/api/v1/cameras/onvif-cam/time", headers=h).status_code == 403
        assert client.post("/api/v1/cameras/onvif-cam/time/sync", headers=h).status_code == 403
    assert abs(sim.clock_offset_s + 300) < 1e-9  # nobody changed it

    bad = client.post("/api/v1/cameras/onvif-cam/time/ntp", json={"server": "not a server"})
    assert bad.status_code == 422 and "NTP" in bad.json()["detail"]
    assert not [c for c in sim.calls if c.operation.startswith("Set")]  # refused before the camera was asked

    r = client.post("/api/v1/cameras/onvif-cam/time/ntp", json={"server": "ntp.ntsc.ac.cn"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["ntp_servers"] == [{"type": "DNS", "address": "ntp.ntsc.ac.cn"}] and got["date_time_type"] == "NTP"
    assert abs(got["clock_offset_s"]) < 1.0 and sim.ntp_servers == [("DNS", "ntp.ntsc.ac.cn")]
    # the stored offset follows: the warning is gone from the list and from health
    assert abs(rt.registry.camera("onvif-cam").clock_offset_ms) < 1000
    assert client.get("/api/v1/cameras/onvif-cam").json()["clock_warning"] is False
    assert not [a for a in _alerts(rt) if a["camera"] == "onvif-cam"]

    sim.clock_offset_s = 42.0  # it drifts (or someone set it by hand)
    r = client.post("/api/v1/cameras/onvif-cam/time/sync")
    assert r.status_code == 200, r.text
    assert abs(r.json()["clock_offset_s"]) < 1.0 and abs(sim.clock_offset_s) < 0.6 and sim.date_time_type == "Manual"

    events = [e for e in rt.audit.events(50) if e.action.startswith("camera.time")]
    assert [e.action for e in events] == ["camera.time.sync", "camera.time.ntp"]
    assert all(e.target == "onvif-cam" and e.actor.startswith("admin:") and e.role == "admin" for e in events)
    ntp = json.loads(events[1].detail)
    assert ntp["ok"] and ntp["server"] == "ntp.ntsc.ac.cn" and ntp["offset_before_ms"] == -300_000
    everything = json.dumps([e.detail for e in rt.audit.events(200)]) + r.text + client.get("/api/v1/cameras").text
    assert PASSWORD not in everything


def test_rest_errors_name_the_camera_problem(lab):
    client, rt, tokens, sim = lab
    # a camera without an ONVIF address (added by RTSP URL): nothing to ask
    r = client.post("/api/v1/cameras/cam-web/time/sync")
    assert r.status_code == 422 and "ONVIF" in r.json()["detail"]
    assert client.get("/api/v1/cameras/nope/time").status_code == 404
    # the camera refuses NTP: 502, the refusal is audited, the clock untouched
    sim.quirks = frozenset({"no_ntp"})
    r = client.post("/api/v1/cameras/onvif-cam/time/ntp", json={"server": "10.0.0.1"})
    assert r.status_code == 502 and r.json()["type"].endswith("/device-setting-refused"), r.text
    assert "摄像机拒绝设置" in r.json()["detail"] and "SetNTP" in r.json()["detail"]
    last = rt.audit.events(1)[0]
    assert last.action == "camera.time.ntp" and json.loads(last.detail) == {
        "server": "10.0.0.1", "ok": False, "error": "DeviceSettingRefusedError"}
    assert sim.clock_offset_s == -300.0
    # a wrong stored password: 502 device-auth, the password not echoed
    assert client.patch("/api/v1/cameras/onvif-cam", json={"password": "wrong-Pw-9"}).status_code == 200
    r = client.get("/api/v1/cameras/onvif-cam/time")
    assert r.status_code == 502 and r.json()["type"].endswith("/device-auth") and "wrong-Pw-9" not in r.text
    # the camera gone: 502 device-unreachable
    sim.stop()
    r = client.post("/api/v1/cameras/onvif-cam/time/sync")
    assert r.status_code == 502 and r.json()["type"].endswith("/device-unreachable")


def test_web_camera_page_warns_and_syncs_with_csrf(lab):
    client, rt, tokens, sim = lab
    admin = sign_in(client.app, tokens["admin"])
    page = admin.get("/ui/cameras")
    assert page.status_code == 200
    assert 'data-clock-warning="yes"' in page.text and "画面时间水印（OSD）与录像索引时间相差超过 2 秒" in page.text
    assert "/ui/cameras/onvif-cam/time/sync" in page.text and "/ui/cameras/cam-web/time/sync" not in page.text
    csrf = csrf_of(page.text)
    # without the form's CSRF token: refused, camera untouched
    assert admin.post("/ui/cameras/onvif-cam/time/sync", data={}).status_code == 403
    assert sim.clock_offset_s == -300.0
    r = admin.post("/ui/cameras/onvif-cam/time/sync", data={"csrf": csrf})
    assert r.status_code == 303 and abs(sim.clock_offset_s) < 0.6
    page = admin.get("/ui/cameras")
    assert "摄像机时间已设为本服务器当前时间" in page.text and 'data-clock-warning="no"' in page.text
    r = admin.post("/ui/cameras/onvif-cam/time/ntp", data={"csrf": csrf, "server": "bad host!"})
    assert r.status_code == 303 and "NTP 服务器地址无效" in admin.get("/ui/cameras").text
    r = admin.post("/ui/cameras/onvif-cam/time/ntp", data={"csrf": csrf, "server": "192.168.1.1"})
    assert r.status_code == 303 and sim.ntp_servers == [("IPv4", "192.168.1.1")]
    assert "摄像机已改用该 NTP 服务器校时" in admin.get("/ui/cameras").text
    # readers see the warning column but no clock controls
    ops = sign_in(client.app, tokens["operations"])
    assert "/time/sync" not in ops.get("/ui/cameras").text


def test_cli_camera_time(tmp_path, seaweed):
    port = free_port()
    env = env_for(tmp_path, seaweed, LABWITNESS_DISCOVERY_PORT=port, LABWITNESS_DISCOVERY_INTERFACES="127.0.0.1")
    with OnvifCameraSimulator(name="cli-time", username="u", password="cli-Pw-5", discovery_port=port,
                              clock_offset_s=3600.0, serial="SN-TIME") as sim:
        r = lw(["camera", "add", "--id", "cli-time", "--from-discovery", sim.endpoint, "--username", "u",
                "--password", "cli-Pw-5", "--timeout", "1.5"], env)
        assert r.returncode == 0, r.stderr[-2000:]
        r = lw(["camera", "time", "show", "cli-time", "--json"], env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert abs(json.loads(r.stdout)["clock_offset_s"] - 3600) < 0.6
        r = lw(["camera", "time", "set-ntp", "cli-time", "bad server"], env)
        assert r.returncode == 2 and "NTP" in r.stderr
        r = lw(["camera", "time", "set-ntp", "cli-time", "10.9.8.7", "--json"], env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout)["ntp_servers"] == [{"type": "IPv4", "address": "10.9.8.7"}]
        sim.clock_offset_s = -20.0
        r = lw(["camera", "time", "sync", "cli-time"], env)
        assert r.returncode == 0 and "cli-time" in r.stderr and abs(sim.clock_offset_s) < 0.6, r.stderr[-2000:]
        sim.quirks = frozenset({"no_ntp"})
        r = lw(["camera", "time", "set-ntp", "cli-time", "10.9.8.7"], env)
        assert r.returncode == 1 and "ActionNotSupported" in r.stderr
        assert "cli-Pw-5" not in r.stderr + r.stdout
    from api.runtime import index_only
    from api.settings import load_settings

    with index_only(load_settings(data_dir=tmp_path / "data")) as ix:
        events = [e for e in ix.audit.events(50) if e.action.startswith("camera.time")]
    assert [(e.action, json.loads(e.detail)["ok"]) for e in events] == [
        ("camera.time.ntp", False), ("camera.time.sync", True), ("camera.time.ntp", True)]
    assert all(e.actor.startswith("cli:") and e.target == "cli-time" for e in events)


def test_stream_clock_reaches_the_api(running):
    """The recorder's RTCP reading of a live camera (GStreamer: the host's clock) in the camera view and health."""
    from conftest import wait_for

    client, rt = running
    wait_for(lambda: client.get("/api/v1/cameras/cam-api").json()["stream_clock_offset_s"] is not None, 40,
             what="the stream's clock offset")
    view = client.get("/api/v1/cameras/cam-api").json()
    assert abs(view["stream_clock_offset_s"]) < 0.5 and view["clock_warning"] is False
    cam = client.get("/api/v1/health").json()["cameras"]["cam-api"]
    assert abs(cam["stream_clock_offset_s"]) < 0.5 and cam["osd_offset_source"] == "RTCP" and cam["stream_clock_at"]
