"""Camera discovery over real sockets: UDP multicast and unicast on loopback,
ONVIF over HTTP, against simulated cameras (:mod:`simulator.onvif`).

Every test binds only 127.0.0.1, uses its own free WS-Discovery port for both
multicast and unicast probes (``wsd_port``), and multicasts only on
127.0.0.1 — so test processes running in parallel never see each other's cameras.
"""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
import requests

from camera_discovery.discovery import discover
from camera_discovery.onvif_client import query_device
from camera_discovery.probe import probe
from camera_discovery.soap import SoapSession
from labwitness.errors import (
    DeviceAuthError,
    DeviceProtocolError,
    DeviceUnreachableError,
    DiscoveryError,
)
from simulator.onvif import OnvifCameraSimulator

from conftest import free_port

USER, PASSWORD = "admin", "s3cret-pw"
LOOPBACK = ["127.0.0.1"]


pytestmark = pytest.mark.usefixtures("onvif_wsdls")


@pytest.fixture
def camera(wsd_port):
    """Factory: start a simulator on this test's WS-Discovery port; all stopped at the end."""
    started: list[OnvifCameraSimulator] = []

    def make(**kw) -> OnvifCameraSimulator:
        kw.setdefault("discovery_port", wsd_port)
        kw.setdefault("username", USER)
        kw.setdefault("password", PASSWORD)
        sim = OnvifCameraSimulator(**kw).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def scan(wsd_port: int, **kw):
    kw.setdefault("timeout", 1.0)
    kw.setdefault("username", USER)
    kw.setdefault("password", PASSWORD)
    kw.setdefault("query_timeout", 2.0)
    return discover(port=wsd_port, interfaces=LOOPBACK, **kw)


def query(sim: OnvifCameraSimulator, **kw):
    kw.setdefault("username", USER)
    kw.setdefault("password", PASSWORD)
    kw.setdefault("timeout", 2.0)
    return query_device(sim.xaddr, **kw)


# -- WS-Discovery ------------------------------------------------------------------

def test_multicast_on_loopback_finds_several_cameras_once_each(camera, wsd_port):
    sims = [camera(name=f"Lab {i}", rtsp_url=f"rtsp://127.0.0.1:8554/cam{i}",
                   sub_rtsp_url=f"rtsp://127.0.0.1:8554/cam{i}-sub") for i in range(4)]
    devices = scan(wsd_port)
    assert sorted(d.endpoint for d in devices) == sorted(s.endpoint for s in sims)  # each once
    by_endpoint = {d.endpoint: d for d in devices}
    for i, sim in enumerate(sims):
        d = by_endpoint[sim.endpoint]
        assert d.error is None
        assert d.xaddrs == [sim.xaddr]
        assert (d.scopes.name, d.scopes.hardware, d.scopes.location) == (f"Lab {i}", "SimCam-1", "lab")
        assert (d.manufacturer, d.model, d.serial, d.firmware) == ("labwitness", "SimCam ONVIF", sim.serial, "1.0.0")
        assert [(p.token, p.stream_uri, p.width, p.height, p.encoding) for p in d.profiles] == [
            ("Profile_1", f"rtsp://127.0.0.1:8554/cam{i}", 1920, 1080, "H264"),
            ("Profile_2", f"rtsp://127.0.0.1:8554/cam{i}-sub", 640, 360, "H264"),
        ]
        assert d.snapshot_uri and d.snapshot_uri.startswith(f"http://127.0.0.1:{sim.http_port}/")
        assert abs(d.clock_offset_s) < 0.5


def test_directed_probe_to_hosts_ends_when_all_answered(camera, wsd_port):
    sims = [camera(name=f"cam {i}", multicast=False) for i in range(3)]
    # they share the WS-Discovery port: the first holds it for unicast, the others got their own
    assert sims[0].discovery_address == f"127.0.0.1:{wsd_port}"
    assert len({s.discovery_address for s in sims}) == 3
    started = time.monotonic()
    result = probe(5.0, [s.discovery_address for s in sims], port=wsd_port, multicast=False)
    assert time.monotonic() - started < 2.0  # far below the 5 s timeout
    assert sorted(m.endpoint for m in result.matches) == sorted(s.endpoint for s in sims)
    assert result.silent == [] and result.bad_answers == {}


def test_multicast_probe_expecting_devices_ends_once_they_answered(camera, wsd_port):
    """The demo knows its cameras: its probe ends when they answered, not at the timeout."""
    sims = [camera(name=f"cam {i}") for i in range(2)]
    started = time.monotonic()
    devices = scan(wsd_port, timeout=10.0, expect={s.endpoint for s in sims})
    assert time.monotonic() - started < 5.0  # far below the 10 s timeout
    assert sorted(d.endpoint for d in devices) == sorted(s.endpoint for s in sims)
    assert all(d.error is None and d.profiles for d in devices)


def test_directed_probe_to_a_cidr(camera, wsd_port):
    sim = camera(name="cidr", multicast=False)
    result = probe(0.8, ["127.0.0.0/30"], port=wsd_port, multicast=False)  # .1 and .2
    assert [m.endpoint for m in result.matches] == [sim.endpoint]
    assert result.silent == [f"127.0.0.2:{wsd_port}"]


def test_a_range_larger_than_a_22_is_refused(wsd_port):
    with pytest.raises(DiscoveryError, match="larger than a /22"):
        discover(timeout=0.5, hosts=["10.0.0.0/21"], port=wsd_port, multicast=False)


def test_scans_on_different_ports_do_not_see_each_other(camera, wsd_port):
    mine = camera(name="mine")
    other_port = free_port()
    other = camera(name="other", discovery_port=other_port)
    assert [m.endpoint for m in probe(0.6, port=wsd_port, interfaces=LOOPBACK).matches] == [mine.endpoint]
    assert [m.endpoint for m in probe(0.6, port=other_port, interfaces=LOOPBACK).matches] == [other.endpoint]


def test_multicast_and_directed_answers_merge_by_endpoint(camera, wsd_port):
    sim = camera(name="both")
    devices = scan(wsd_port, hosts=[sim.discovery_address], query_devices=False)
    assert [d.endpoint for d in devices] == [sim.endpoint]


def test_malformed_probe_match_is_a_per_source_error(camera, wsd_port):
    good = camera(name="good")
    bad = camera(name="bad", quirks={"malformed_probe_match"})
    devices = scan(wsd_port)
    assert [d.endpoint for d in devices if d.error is None] == [good.endpoint]
    (broken,) = [d for d in devices if d.endpoint is None]
    assert broken.source == bad.discovery_address
    assert "malformed XML" in broken.error


def test_unencoded_spaces_in_scopes(camera, wsd_port):
    camera(name="IP Camera 7", quirks={"raw_scopes"})
    (device,) = scan(wsd_port, query_devices=False)
    assert device.scopes.name == "IP Camera 7"


def test_discovered_stream_uri_plays(camera, wsd_port, rtsp):
    import av

    camera(name="real stream", rtsp_url=rtsp.url("/live"))
    (device,) = scan(wsd_port)
    uri = device.profiles[0].stream_uri
    assert uri == rtsp.url("/live")
    with av.open(uri, options={"rtsp_transport": "tcp"}, timeout=10) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (320, 240)


# -- digest auth and the clock -----------------------------------------------------------

def test_digest_auth_right(camera):
    sim = camera()
    info = query(sim)
    assert info.manufacturer == "labwitness"
    protected = [c for c in sim.calls if c.operation not in ("GetSystemDateAndTime",)]
    assert protected and all(c.authenticated for c in protected)
    assert all(c.auth_problem is None for c in sim.calls)
    # the spec leaves GetSystemDateAndTime open: it is asked without credentials
    assert [c.authenticated for c in sim.calls if c.operation == "GetSystemDateAndTime"] == [False, False]


def test_digest_auth_wrong_password(camera):
    sim = camera(clock_offset_s=42.0)
    with pytest.raises(DeviceAuthError, match="credentials for user 'admin' refused on GetDeviceInformation") as e:
        query(sim, password="wrong")
    assert sim.calls[-1].auth_problem == "wrong digest (password)"
    assert abs(e.value.partial.clock_offset_s - 42.0) < 0.5  # what was learned is kept


def test_no_credentials_for_a_protected_camera(camera):
    sim = camera()
    with pytest.raises(DeviceAuthError, match="requires credentials for GetDeviceInformation"):
        query(sim, username=None, password=None)


def test_open_camera_needs_no_credentials(camera):
    sim = camera(username=None, password=None)
    assert query(sim, username=None, password=None).profiles[0].stream_uri


@pytest.mark.parametrize("offset", [0.0, 3600.3, -7.7, 3 * 86400 + 0.45, -0.5])
def test_clock_offset_is_measured_and_used_to_sign(camera, offset):
    sim = camera(clock_offset_s=offset)  # auth tolerance 5 s: signing with the host clock would fail
    info = query(sim)
    assert abs(info.clock_offset_s - offset) < 0.5
    assert info.clock_uncertainty_s < 0.5
    assert all(c.auth_problem is None for c in sim.calls)


def test_simulator_refuses_tokens_dated_by_the_wrong_clock(camera):
    sim = camera(clock_offset_s=3600.0)
    with SoapSession(USER, PASSWORD, 2.0) as session:  # clock offset left at 0
        with pytest.raises(DeviceAuthError, match="not authorized"):
            session.call(sim.xaddr, "device", "GetDeviceInformation", auth=True)
        session.clock_offset_s = 3600.0
        session.call(sim.xaddr, "device", "GetDeviceInformation", auth=True)
    problem = sim.calls[0].auth_problem
    assert problem.startswith("Created is -") and abs(float(problem.split()[2]) + 3600) < 1.5
    assert sim.calls[1].authenticated


def test_simulator_refuses_a_replayed_nonce(camera):
    sim = camera()
    nonce, created = b"0123456789abcdef", sim.camera_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + PASSWORD.encode()).digest()).decode()
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    body = (
        f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header>'
        f'<Security xmlns="{wsse}"><UsernameToken><Username>{USER}</Username>'
        f'<Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">'
        f"{digest}</Password><Nonce>{base64.b64encode(nonce).decode()}</Nonce>"
        f'<Created xmlns="{wsu}">{created}</Created></UsernameToken></Security></s:Header>'
        '<s:Body><GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>'
    )
    assert requests.post(sim.xaddr, data=body, timeout=5).status_code == 200
    assert requests.post(sim.xaddr, data=body, timeout=5).status_code == 400
    assert [c.auth_problem for c in sim.calls] == [None, "replayed nonce"]


# -- tolerated deviations ------------------------------------------------------------------

@pytest.mark.parametrize("quirk", ["wrong_namespace", "missing_wrappers", "odd_date", "truncated_date"])
def test_tolerated_deviation(camera, quirk):
    sim = camera(quirks={quirk}, clock_offset_s=12.3, rtsp_url="rtsp://127.0.0.1:8554/q", sub_rtsp_url="rtsp://127.0.0.1:8554/s")
    info = query(sim)
    assert (info.manufacturer, info.serial) == ("labwitness", sim.serial)
    assert abs(info.clock_offset_s - 12.3) < 0.5
    assert [(p.stream_uri, p.width, p.height) for p in info.profiles] == [
        ("rtsp://127.0.0.1:8554/q", 1920, 1080), ("rtsp://127.0.0.1:8554/s", 640, 360)]
    if quirk == "odd_date":
        assert info.clock_source == "LocalDateTime + TZ CST-08:00"


def test_credentials_demanded_on_get_system_date_and_time(camera):
    sim = camera(quirks={"auth_preauth"}, clock_offset_s=600.4)
    info = query(sim)
    assert abs(info.clock_offset_s - 600.4) < 0.5
    times = [c for c in sim.calls if c.operation == "GetSystemDateAndTime"]
    # tried without, then with (dated by the HTTP Date of the refusal), then with only
    assert [c.authenticated for c in times] == [False, True, True]


def test_credentials_demanded_on_time_and_no_clock_to_learn_from(camera):
    sim = camera(quirks={"auth_preauth", "no_date_header"}, clock_offset_s=600.0)
    with pytest.raises(DeviceAuthError, match="GetSystemDateAndTime demands credentials and refused them"):
        query(sim)
    problem = sim.calls[-1].auth_problem
    assert problem.startswith("Created is -") and abs(float(problem.split()[2]) + 600) < 1.5


def test_credentials_demanded_on_time_without_credentials(camera):
    sim = camera(quirks={"auth_preauth"})
    with pytest.raises(DeviceAuthError, match="even for GetSystemDateAndTime"):
        query(sim, username=None, password=None)


def test_device_without_get_services_falls_back_to_get_capabilities(camera):
    sim = camera(quirks={"no_services"})
    info = query(sim)
    assert info.profiles[0].stream_uri
    assert "GetCapabilities" in [c.operation for c in sim.calls]


# -- bad devices: each a clear error ---------------------------------------------------------

@pytest.mark.parametrize("quirk,error,message", [
    ("malformed_soap", DeviceProtocolError, "malformed XML"),
    ("xxe", DeviceProtocolError, "carries a DTD"),
    ("entity_bomb", DeviceProtocolError, "carries a DTD"),
    ("bad_envelope", DeviceProtocolError, "not a SOAP envelope"),
    ("html", DeviceProtocolError, "HTML page"),
    ("oversized", DeviceProtocolError, "answer exceeds 1000000 bytes"),
])
def test_bad_device(camera, quirk, error, message):
    sim = camera(quirks={quirk})
    started = time.monotonic()
    with pytest.raises(error, match=message) as e:
        query(sim)
    assert time.monotonic() - started < 1.5
    assert "GetSystemDateAndTime @ " + sim.xaddr in str(e.value)  # says which device and call
    assert "root:" not in str(e.value)  # the XXE never read /etc/passwd


def test_device_that_never_answers(camera):
    sim = camera(quirks={"hang"})
    started = time.monotonic()
    with pytest.raises(DeviceUnreachableError, match="no answer within 1 s"):
        query(sim, timeout=1.0)
    assert 0.9 < time.monotonic() - started < 3.0


def test_nothing_listening():
    with pytest.raises(DeviceUnreachableError, match="cannot connect"):
        query_device(f"http://127.0.0.1:{free_port()}/onvif/device_service", USER, PASSWORD, timeout=1.0)


def test_scan_goes_on_past_bad_devices(camera, wsd_port):
    good = [camera(name=f"good {i}") for i in range(2)]
    expected = {
        "malformed_soap": "malformed XML",
        "xxe": "carries a DTD",
        "entity_bomb": "carries a DTD",
        "html": "HTML page",
        "hang": "no answer within",
        "bad_envelope": "not a SOAP envelope",
        "oversized": "answer exceeds",
    }
    bad = {camera(name=f"bad {q}", quirks={q}).endpoint: message for q, message in expected.items()}
    wrong_password = camera(name="other password", password="different")
    silent_udp = camera(name="garbled", quirks={"malformed_probe_match"})

    started = time.monotonic()
    devices = scan(wsd_port, query_timeout=1.5)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0 + 1.5 * 2 + 2.0  # probe + the hanging device's timeout + slack
    by_endpoint = {d.endpoint: d for d in devices}
    assert len(by_endpoint) == len(devices)  # none twice
    for sim in good:
        assert by_endpoint[sim.endpoint].error is None
        assert by_endpoint[sim.endpoint].profiles[0].stream_uri
    for endpoint, message in bad.items():
        assert message in by_endpoint[endpoint].error
    assert "refused" in by_endpoint[wrong_password.endpoint].error
    assert by_endpoint[wrong_password.endpoint].clock_offset_s is not None  # learned before the refusal
    assert by_endpoint[None].source == silent_udp.discovery_address
    assert len(devices) == 2 + len(bad) + 2
