"""Reading and setting a camera's clock over real ONVIF SOAP/HTTP against the simulated
camera (:mod:`camera_discovery.onvif_time`, :mod:`simulator.onvif`): GetNTP, SetNTP,
SetSystemDateAndTime, and the errors an admin sees when a camera refuses."""

from __future__ import annotations

import pytest

from camera_discovery.onvif_time import NtpServer, ntp_server, read_time_settings, set_ntp, sync_time
from labwitness.errors import DeviceAuthError, DeviceSettingRefusedError, DeviceUnreachableError, ValidationError
from simulator.onvif import OnvifCameraSimulator

from conftest import free_port

USER, PASSWORD = "admin", "t1me-pw"

pytestmark = pytest.mark.usefixtures("onvif_wsdls")


@pytest.fixture
def camera():
    started: list[OnvifCameraSimulator] = []

    def make(**kw) -> OnvifCameraSimulator:
        kw.setdefault("username", USER)
        kw.setdefault("password", PASSWORD)
        kw.setdefault("discovery_port", free_port())
        kw.setdefault("multicast", False)
        sim = OnvifCameraSimulator(**kw).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.mark.parametrize("text, expected", [
    ("192.168.1.10", NtpServer("IPv4", "192.168.1.10")),
    (" ntp.aliyun.com ", NtpServer("DNS", "ntp.aliyun.com")),
    ("cn.pool.ntp.org.", NtpServer("DNS", "cn.pool.ntp.org")),
    ("fd00::123", NtpServer("IPv6", "fd00::123")),
    ("ntp1", NtpServer("DNS", "ntp1")),
])
def test_ntp_server_text(text, expected):
    assert ntp_server(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "999.1.1.1", "ntp server", "a" * 254, "-bad.example", "224.0.0.1",
                                  "0.0.0.0", "ntp.example/../x", "1.2.3"])
def test_bad_ntp_server_is_refused_before_the_camera_sees_it(text):
    with pytest.raises(ValidationError, match="NTP"):
        ntp_server(text)


def test_read_shows_offset_type_and_ntp(camera):
    sim = camera(clock_offset_s=-95.0)
    sim.ntp_servers = [("DNS", "ntp.ntsc.ac.cn")]
    got = read_time_settings(sim.xaddr, USER, PASSWORD, 3.0)
    assert abs(got.clock_offset_s + 95.0) < 0.5 and got.clock_uncertainty_s < 0.5
    assert got.date_time_type == "NTP" and got.time_zone == "CST-8" and got.daylight_savings is False
    assert got.ntp_from_dhcp is False and got.ntp_servers == [NtpServer("DNS", "ntp.ntsc.ac.cn")]
    assert got.ntp_error is None
    assert all(c.auth_problem is None for c in sim.calls)  # signed with the camera's clock, 95 s behind


@pytest.mark.parametrize("offset", [-600.0, 3.4, 8 * 3600.0])
def test_sync_sets_the_camera_clock_to_the_host(camera, offset):
    sim = camera(clock_offset_s=offset)
    got = sync_time(sim.xaddr, USER, PASSWORD, 3.0)
    assert abs(sim.clock_offset_s) < 0.6, sim.clock_offset_s  # the simulator's own clock was set
    assert abs(got.clock_offset_s) < 1.0 and got.date_time_type == "Manual"
    assert [c.operation for c in sim.calls].count("SetSystemDateAndTime") == 1
    assert all(c.authenticated for c in sim.calls if c.operation.startswith("Set"))


def test_set_ntp_points_the_camera_at_the_server_and_it_follows(camera):
    sim = camera(clock_offset_s=-240.0)
    sim.date_time_type = "Manual"
    got = set_ntp(sim.xaddr, "10.20.0.1", USER, PASSWORD, 3.0)
    assert sim.ntp_servers == [("IPv4", "10.20.0.1")] and sim.ntp_from_dhcp is False
    assert got.ntp_servers == [NtpServer("IPv4", "10.20.0.1")] and got.date_time_type == "NTP"
    assert abs(got.clock_offset_s) < 1.0  # the simulated camera syncs to its (the host's) NTP at once
    again = read_time_settings(sim.xaddr, USER, PASSWORD, 3.0, samples=1)
    assert again.ntp_servers == [NtpServer("IPv4", "10.20.0.1")]


def test_camera_without_ntp_says_so(camera):
    sim = camera(quirks={"no_ntp"}, clock_offset_s=30.0)
    got = read_time_settings(sim.xaddr, USER, PASSWORD, 3.0, samples=1)
    assert got.ntp_servers == [] and "ActionNotSupported" in got.ntp_error and abs(got.clock_offset_s - 30) < 1
    with pytest.raises(DeviceSettingRefusedError, match="摄像机拒绝设置.*SetNTP.*ActionNotSupported") as e:
        set_ntp(sim.xaddr, "ntp.example.cn", USER, PASSWORD, 3.0)
    assert e.value.code == "device-setting-refused" and "ActionNotSupported" in e.value.subcodes
    assert sim.clock_offset_s == 30.0  # nothing changed
    sync_time(sim.xaddr, USER, PASSWORD, 3.0)  # a manual set still works
    assert abs(sim.clock_offset_s) < 0.6


def test_wrong_password_changes_nothing_and_is_not_echoed(camera):
    sim = camera(clock_offset_s=12.0)
    with pytest.raises(DeviceAuthError) as e:
        sync_time(sim.xaddr, USER, "wrong-secret-xyz", 3.0)
    assert "wrong-secret-xyz" not in str(e.value) and "用户名或密码被拒绝" in str(e.value)
    assert sim.clock_offset_s == 12.0 and sim.date_time_type == "NTP"


def test_camera_down_is_unreachable():
    with pytest.raises(DeviceUnreachableError):
        read_time_settings(f"http://127.0.0.1:{free_port()}/onvif/device_service", USER, PASSWORD, 1.0)
