"""Discovery feeding the registry, end to end: simulated ONVIF cameras -> scan -> register -> recording."""

from __future__ import annotations

import json

from simulator.onvif import OnvifCameraSimulator

from clitools import env_for, lw
from conftest import free_port, wait_for


def test_scan_register_from_discovery_and_record(running, rtsp):
    client, rt = running
    port = rt.settings.discovery_port
    with OnvifCameraSimulator(name="UTM-cam", rtsp_url=rtsp.url("/live"), username="onvif", password="0nvif-pass",
                              clock_offset_s=7.5, discovery_port=port, serial="SN-UTM-1") as cam, \
         OnvifCameraSimulator(name="locked", rtsp_url=rtsp.url("/live"), username="onvif", password="other",
                              discovery_port=port, serial="SN-LOCKED") as locked:
        scan = client.post("/api/v1/discovery/scan", json={"timeout": 1.5, "username": "onvif", "password": "0nvif-pass"})
        assert scan.status_code == 200, scan.text
        devices = {d["endpoint"]: d for d in scan.json()}
        assert cam.endpoint in devices and locked.endpoint in devices
        d = devices[cam.endpoint]
        assert d["serial"] == "SN-UTM-1" and abs(d["clock_offset_s"] - 7.5) < 0.5
        assert d["profiles"][0]["stream_uri"].endswith("/live") and d["error"] is None
        assert devices[locked.endpoint]["error"]  # wrong password: a clear per-device error, the scan went on

        r = client.post("/api/v1/cameras", json={"id": "utm-cam", "from_discovery": cam.endpoint, "area_id": "lixue",
                                                 "username": "onvif", "password": "0nvif-pass"})
        assert r.status_code == 201, r.text
        view = r.json()
        assert view["onvif_endpoint"] == cam.endpoint and view["serial"] == "SN-UTM-1"
        assert abs(view["clock_offset_s"] - 7.5) < 0.5
        # the discovered stream URI is recorded end to end
        wait_for(lambda: len(list(rt.index.iter_segments("utm-cam"))) >= 2, 30, what="recording of the discovered camera")
        assert client.post("/api/v1/cameras", json={"id": "x", "from_discovery": locked.endpoint}).status_code == 422


def test_cli_discover_json_and_add_from_discovery(tmp_path, seaweed, rtsp):
    port = free_port()
    env = env_for(tmp_path, seaweed, LABWITNESS_DISCOVERY_PORT=port, LABWITNESS_DISCOVERY_INTERFACES="127.0.0.1")
    with OnvifCameraSimulator(name="cli-cam", rtsp_url=rtsp.url("/live"), username="u", password="p",
                              discovery_port=port, serial="SN-CLI", clock_offset_s=-3) as cam:
        r = lw(["discover", "--timeout", "1.5", "--username", "u", "--password", "p", "--json"], env)
        assert r.returncode == 0, r.stderr[-2000:]
        devs = json.loads(r.stdout)
        mine = [d for d in devs if d["endpoint"] == cam.endpoint]
        assert len(mine) == 1
        assert set(mine[0]) >= {"endpoint", "xaddrs", "manufacturer", "model", "serial", "clock_offset_s", "profiles"}
        assert set(mine[0]["profiles"][0]) >= {"token", "stream_uri", "width", "height", "encoding"}
        assert abs(mine[0]["clock_offset_s"] + 3) < 0.5
        r = lw(["camera", "add", "--id", "cli-cam", "--from-discovery", cam.endpoint, "--username", "u", "--password", "p",
                "--timeout", "1.5", "--json"], env)
        assert r.returncode == 0, r.stderr[-2000:]
        added = json.loads(r.stdout)
        assert added["onvif_endpoint"] == cam.endpoint and added["rtsp_url"].endswith("/live") and added["has_password"]
        r = lw(["camera", "add", "--id", "ghost", "--from-discovery", "urn:uuid:00000000-0000-0000-0000-000000000000",
                "--timeout", "1"], env)
        assert r.returncode == 1 and "did not answer" in r.stderr
