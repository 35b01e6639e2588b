"""Real cameras' ONVIF answers (``tests/fixtures/onvif/``, origin of each in its
``sources.json``): Hikvision and a Hikvision OEM, Dahua (two cameras and an
NVR), two Uniview OEMs, Xiongmai, Axis, D-Link, Milesight and three unbranded
firmwares.

Every stored answer is read by the project's parsers and must give the values
written below from reading the XML by hand (table ``EXPECTED``); then the same
answers are served by a replay camera (:mod:`onvif_replay`) over real HTTP and
UDP on 127.0.0.1, and :func:`query_device`, :func:`read_clock` and the
WS-Discovery probe must produce those values end to end.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from camera_discovery import onvif_parse as parse
from camera_discovery import soap, ws_discovery, xmlsafe
from camera_discovery.discovery import discover
from camera_discovery.models import MediaProfile, Scopes
from camera_discovery.onvif_client import query_device, read_clock
from camera_discovery.probe import probe
from camera_discovery.soap import SoapSession
from onvif_replay import FIXTURES, ReplayCamera, envelope, sources

NS_MEDIA2 = "http://www.onvif.org/ver20/media/wsdl"
NS_DEVICE, NS_MEDIA = parse.NS_DEVICE, parse.NS_MEDIA
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def P(token, name, encoding, width, height):  # noqa: N802 (a table row)
    return MediaProfile(token, name, encoding, width, height)


#: what each stored answer says, read from the XML by hand.
#: GetSystemDateAndTime: (the instant, TZ as written, LocalDateTime − UTC the answer shows, where it was read from)
EXPECTED: dict[str, dict[str, object]] = {
    "hikvision-oem-enp1a14-ir-25x": {
        "GetDeviceInformation.xml": ("ONVIF", "ENP1A14-IR/25X", "V5.5.3 build 180822", "ENP1A14-IR/25X20190430AAWRD14878498W", "88"),
        "GetCapabilities.xml": ("http://192.168.1.182/onvif/Media", "http://192.168.1.182/onvif/device_service", 6),
        "GetServices.xml": ("http://192.168.1.182/onvif/Media", "http://192.168.1.182/onvif/device_service", 11),
        "GetSystemDateAndTime.xml": (utc(2023, 3, 6, 14, 13, 45), "EST+5:00:00EDT04:00:00,M3.5.0/01:00:00,M10.5.0/02:00:00", -5 * HOUR),
        # Hikvision puts H265 in the Media1 answer (its schema knows JPEG/MPEG4/H264 only)
        "GetProfiles.xml": [P("Profile_1", "mainStream", "H265", 2560, 1440), P("Profile_2", "subStream", "H265", 704, 480),
                            P("Profile_3", "thirdStream", None, None, None)],
        "GetStreamUri.xml": "rtsp://192.168.1.182:554/Streaming/Channels/101?transportmode=mcast&profile=Profile_1",
        "Media2-GetProfiles.xml": [P("Profile_1", "mainStream", None, None, None), P("Profile_2", "subStream", None, None, None),
                                   P("Profile_3", "thirdStream", None, None, None)],
        "Media2-GetStreamUri.xml": "rtsp://192.168.1.182/Streaming/Channels/101?transportmode=unicast&profile=Profile_1",
    },
    "hikvision-ds-2cd3955fwd-iws": {
        "ProbeMatches.xml": (
            "urn:uuid:18ec6401-3aa0-11b5-83f6-b4a3820fd92d",
            ("http://192.168.0.218/onvif/device_service", "http://[fe80::b6a3:82ff:fe0f:d92d]/onvif/device_service"),
            ("dn:NetworkVideoTransmitter", "tds:Device"),
            Scopes("HIKVISION DS-2CD3955FWD-IWS", "DS-2CD3955FWD-IWS", "city/hangzhou"),
        ),
    },
    "dahua-go2rtc": {
        "GetCapabilities.xml": ("http://192.168.1.123/onvif/media_service", "http://192.168.1.123/onvif/device_service", 5),
        "GetStreamUri.xml": "rtsp://192.168.1.123:554/cam/realmonitor?channel=1&subtype=1&unicast=true&proto=Onvif",
        "GetSnapshotUri.xml": "http://192.168.1.123/onvifsnapshot/media_service/snapshot?channel=1&subtype=1",
    },
    "dahua-nvr-hammeraj": {
        # video encoders without Encoding/Resolution (or none): unknown, and never the audio encoder's G711
        "GetProfiles.xml": [P(f"MediaProfile{c:03d}{s:02d}", f"MediaProfile_Channel{c + 1}_{stream}", None, None, None)
                            for c in range(12) for s, stream in enumerate(("MainStream", "SubStream1", "SubStream2"))],
    },
    "dahua-ipc-hdw1025c": {
        "GetDeviceInformation.xml": ("Dahua", "IPC-HDW1025C", "2.420.Dahua 00.14.R, build: 2016-06-18", "2J01018PAA00813", "1.00"),
    },
    "uniview-oem-gx728mf-ir28": {
        # an OEM's placeholder manufacturer is reported as the camera says it
        "GetDeviceInformation.xml": ("NONE", "GX728MF-IR28", "IPC_G6106-B0005P11D1812C03", "210235T8HQ3197000191", "GX728MF-IR28"),
        "GetCapabilities.xml": ("http://192.168.1.127:80/onvif/media", "http://192.168.1.127:80/onvif/device_service", 5),
        "GetServices.xml": ("http://192.168.1.127:80/onvif/media", "http://192.168.1.127:80/onvif/device_service", 8),
        "GetSystemDateAndTime.xml": (utc(2023, 3, 8, 0, 27, 9), "CST5CDT,M3.2.0/2,M11.1.0/2", -5 * HOUR),
        "GetProfiles.xml": [P("media_profile1", "media_profile1", "H264", 3840, 2160), P("media_profile2", "media_profile2", "H264", 720, 576),
                            P("media_profile3", "media_profile3", "H264", 352, 288)],
        "Media2-GetProfiles.xml": [P(f"media_profile{i}", f"media_profile{i}", None, None, None) for i in (1, 2, 3)],
    },
    "uniview-oem-sunba-performance": {
        "GetDeviceInformation.xml": ("SUNBA", "Performance-Series", "QIPC-B2202.3.73.C06290.NB.230628", "210231T2H63235000045", "Performance-Series"),
        "GetCapabilities.xml": ("http://162.191.54.181:80/onvif/media", "http://162.191.54.181:80/onvif/device_service", 6),
        "GetServices.xml": ("http://162.191.54.181:80/onvif/media", "http://162.191.54.181:80/onvif/device_service", 13),
        "GetSystemDateAndTime.xml": (utc(2024, 4, 5, 17, 16, 28), "CST5:00:00", -5 * HOUR),
        "GetProfiles.xml": [P("media_profile1", "media_profile1", "H264", 2592, 1944), P("media_profile2", "media_profile2", "H264", 720, 576),
                            P("media_profile3", "media_profile3", "H264", 352, 288)],
        "Media2-GetProfiles.xml": [P(f"media_profile{i}", f"media_profile{i}", None, None, None) for i in (1, 2, 3)],
        "Media2-GetStreamUri.xml": "rtsp://162.191.54.181/media/video1",
    },
    "xiongmai-xm530-sunba": {
        "GetDeviceInformation.xml": ("H264", "XM530_50X50-WG_8M", "V5.00.R02.L5330747.10010.349917..ONVIF 16.12", "f0d2d8a9c5380a0f", "00001"),
        "GetCapabilities.xml": ("http://192.168.15.40:8899/onvif/Media", "http://192.168.15.40:8899/onvif/device_service", 6),
        "GetServices.xml": ("http://192.168.15.40:8899/onvif/Media", "http://192.168.15.40:8899/onvif/device_service", 6),
        # DaylightSavings true, yet LocalDateTime is UTC−6 (no CDT applied): the TZ's standard offset is what it used
        "GetSystemDateAndTime.xml": (utc(2025, 4, 27, 1, 27, 42), "CST6CDT:", -6 * HOUR),
        "GetProfiles.xml": [P("000", "Profile_000", "H264", 2592, 1944), P("001", "Profile_001", "H264", 704, 480)],
        # Media2 shape: Configurations/VideoEncoder (read since this fixture; see onvif_parse.parse_profiles)
        "Media2-GetProfiles.xml": [P("000", "Profile_000", "H264", 2592, 1944), P("001", "Profile_001", "H264", 704, 480)],
        "Media2-GetStreamUri.xml": "rtsp://192.168.15.40:554/user=admin_password=_channel=1_stream=0&protocol=unicast&onvif=ture.sdp?real_stream",
    },
    "dlink-dcs-6511": {
        "GetDeviceInformation.xml": ("D-Link Corporation", "DCS-6511", "1.16.00", "F07D68099FCA", "F07D68099FCA"),
        # every service at the device service's own address
        "GetCapabilities.xml": ("http://192.168.1.33:80/onvif/device_service", "http://192.168.1.33:80/onvif/device_service", 4),
        "GetSystemDateAndTime.xml": (utc(2023, 3, 7, 16, 14, 53), "COT5", -5 * HOUR),
        "GetProfiles.xml": [P("Profile1", "Profile1", "H264", 1280, 1024), P("Profile2", "Profile2", "H264", 640, 480)],
    },
    "unbranded-ipd-h4k8m05-bs": {
        # empty Manufacturer element: no manufacturer, not ""
        "GetDeviceInformation.xml": (None, "IPD-H4K8M05-BS", "V1.04.10-190309", "071D3E36963F", "1.0"),
        "GetCapabilities.xml": ("http://192.168.15.40:8999/onvif/media_service", "http://192.168.15.40:8999/onvif/device_service", 6),
        "GetServices.xml": ("http://192.168.15.40:8999/onvif/media_service", "http://192.168.15.40:8999/onvif/device_service", 7),
        "GetSystemDateAndTime.xml": (utc(2025, 4, 6, 17, 38, 53), "AST4ADT", -4 * HOUR),
        "GetProfiles.xml": [P("MainStream", "MainStream", "H264", 2592, 1944), P("SubStream", "SubStream", "H264", 640, 480)],
        "GetStreamUri.xml": "rtsp://192.168.15.40:554/1/h264major",
        "GetSnapshotUri.xml": "http://192.168.15.40/jpgimage/1/image.jpg",
    },
    "ipnc-ipg-8150pss": {
        "GetDeviceInformation.xml": ("ONVIF_IPNC", "IPG-8150PSS", "1.3.0-20210203CN-PT", "I207215E7840DFDA9877E8B", "8FE1887A-72EE-403f-9385-5a58aed534cf"),
        "GetCapabilities.xml": ("http://10.200.1.2/onvif/media_service", "http://10.200.1.2/onvif/device_service", 6),
        "GetServices.xml": ("http://10.200.1.2/onvif/media_service", "http://10.200.1.2/onvif/device_service", 8),
        "GetSystemDateAndTime.xml": (utc(2024, 2, 20, 13, 13, 1), "CST-08:00", 8 * HOUR),
        "GetProfiles.xml": [P("PROFILE_000", "PROFILE_000", "H264", 2560, 1920), P("PROFILE_001", "PROFILE_001", "H264", 800, 448)],
        "GetStreamUri.xml": "rtsp://10.200.1.2/live/0/MAIN",
        "Media2-GetProfiles.xml": [P("PROFILE_000", "PROFILE_000", None, None, None), P("PROFILE_001", "PROFILE_001", None, None, None)],
        "Media2-GetStreamUri.xml": "rtsp://10.200.1.2/live/0/MAIN",
    },
    "unbranded-agsh-pr165": {
        # only LocalDateTime, no TimeZone, no namespace declarations at all: read as UTC, and said so
        "GetSystemDateAndTime.xml": (utc(1979, 11, 30, 0, 0, 50), None, None, "LocalDateTime (time zone None unknown, read as UTC)"),
    },
    "axis-hammeraj": {
        "GetSystemDateAndTime.xml": (utc(2024, 7, 9, 19, 49, 6), "BRT3", -3 * HOUR),
    },
    "milesight-ms-c8165-pe": {
        "GetDeviceInformation.xml": ("Milesight Technology Co.,Ltd.", "MS-C8165-PE", "61.8.0.3-r8", "EM82V102329001403", "V1.0"),
    },
}

ROWS = [(device, name, expected) for device, files in EXPECTED.items() for name, expected in files.items()]


def operation(name: str) -> str:
    return name.removesuffix(".xml").removeprefix("Media2-")


def payload_of(data: bytes, what: str):
    root = xmlsafe.parse(data, what)
    return soap._payload(root, what)


def clock_source(expected: tuple) -> str:
    return expected[3] if len(expected) > 3 else "UTCDateTime"


def check(name: str, payload, expected, host_now: datetime) -> None:
    """The parser of ``name``'s operation, on ``payload``, gives ``expected``."""
    op = operation(name)
    if op == "GetDeviceInformation":
        info = parse.parse_device_information(payload)
        assert (info["manufacturer"], info["model"], info["firmware"], info["serial"], info["hardware_id"]) == expected
    elif op in ("GetCapabilities", "GetServices"):
        services = (parse.parse_capabilities if op == "GetCapabilities" else parse.parse_services)(payload)
        media, device, count = expected
        assert (services.get(NS_MEDIA), services.get(NS_DEVICE), len(services)) == (media, device, count)
    elif op == "GetSystemDateAndTime":
        reading = parse.parse_system_date_and_time(payload, host_now)
        assert (reading.utc, reading.resolution_s, reading.source) == (expected[0], 1.0, clock_source(expected))
    elif op == "GetProfiles":
        assert parse.parse_profiles(payload) == expected
    elif op in ("GetStreamUri", "GetSnapshotUri"):
        assert parse.parse_uri(payload) == expected
    else:
        raise AssertionError(f"no check for {name}")


# -- the fixtures are what sources.json says --------------------------------------

def test_every_fixture_is_listed_with_its_origin_and_has_expectations():
    listed = {(d, f) for d, meta in sources()["devices"].items() for f in meta["files"]}
    present = {(p.parent.name, p.name) for p in FIXTURES.glob("*/*.xml")}
    assert present == listed
    assert present == {(d, n) for d, n, _ in ROWS}
    for device, meta in sources()["devices"].items():
        # a repository file at a commit, or a thread (its URL) when the answer was posted in one
        assert meta["repository"] and meta["licence"], device
        assert re.fullmatch(r"[0-9a-f]{40}", meta["commit"] or "") or meta["url"].startswith("https://github.com/"), device
        assert "brand_evidence" in meta and "missing" in meta, device
    brands = {d.split("-")[0] for d in EXPECTED}
    assert {"hikvision", "dahua", "uniview", "axis"} <= brands


# -- parsing -----------------------------------------------------------------------

@pytest.mark.parametrize("device,name,expected", [r for r in ROWS if r[1] != "ProbeMatches.xml"],
                         ids=[f"{d}/{n}" for d, n, _ in ROWS if n != "ProbeMatches.xml"])
def test_stored_answer_parses_to_what_it_says(device, name, expected):
    data = (FIXTURES / device / name).read_bytes()
    check(name, payload_of(envelope(data), f"{device}/{name}"), expected, datetime.now(timezone.utc))


@pytest.mark.parametrize("device", [d for d, n, e in ROWS if n == "GetSystemDateAndTime.xml" and e[1] is not None])
def test_local_time_and_tz_give_the_same_instant_as_utc(device):
    """The camera's own TZ string (Hikvision's 'EST+5:00:00EDT…', 'CST-08:00',
    'CST6CDT:', …) turns its LocalDateTime into its UTCDateTime: what a camera
    that sends LocalDateTime only is read by. The UTCDateTime is taken out of a
    copy of the real answer to get there."""
    when, tz, local_minus_utc = EXPECTED[device]["GetSystemDateAndTime.xml"][:3]
    assert parse.parse_posix_tz(tz) == local_minus_utc
    data = (FIXTURES / device / "GetSystemDateAndTime.xml").read_text(encoding="utf-8")
    local_only, removed = re.subn(r"<(\w+:)?UTCDateTime>.*?</(\w+:)?UTCDateTime>", "", data, flags=re.S)
    assert removed == 1
    reading = parse.parse_system_date_and_time(payload_of(local_only.encode(), device), when)
    assert (reading.utc, reading.source) == (when, f"LocalDateTime + TZ {tz}")


def test_hikvision_probe_match():
    endpoint, xaddrs, types, scopes = EXPECTED["hikvision-ds-2cd3955fwd-iws"]["ProbeMatches.xml"]
    data = (FIXTURES / "hikvision-ds-2cd3955fwd-iws" / "ProbeMatches.xml").read_bytes()
    relates_to, (match,) = ws_discovery.parse_probe_matches(data, "192.168.0.218:3702")
    assert relates_to == "uuid:bfe8bb88-03a2-4e1a-904a-59a7d2882649"
    assert (match.endpoint, match.xaddrs, match.types, Scopes.from_uris(match.scopes)) == (endpoint, xaddrs, types, scopes)


# -- over real HTTP: every stored answer, through SoapSession -------------------------

_PARAMS = {
    "GetServices": {"IncludeCapability": False},
    "GetCapabilities": {"Category": "All"},
    "GetStreamUri": {"StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}},
}


@pytest.mark.usefixtures("onvif_wsdls")
@pytest.mark.parametrize("device", sorted(d for d in EXPECTED if d != "hikvision-ds-2cd3955fwd-iws"))
def test_every_stored_answer_over_http(device):
    """Each answer, sent by the replay camera over HTTP and received by the
    real SOAP client (size bound, envelope check, fault handling), parses to
    the same values. Media2 answers are served on the …/Media2 path; the
    request sent there is Media1's message of the same name."""
    tokens = sources()["devices"][device].get("stream_uri_tokens", {})
    with ReplayCamera(device) as camera, SoapSession(None, None, 3.0) as session:
        for name, expected in EXPECTED[device].items():
            op = operation(name)
            at = camera.media2_xaddr if name.startswith("Media2-") else camera.xaddr
            params = dict(_PARAMS.get(op, {}))
            if op in ("GetStreamUri", "GetSnapshotUri"):
                token = tokens.get(name, "unknown")  # unknown: the replay answers any token
                params["ProfileToken"] = "any" if token.startswith("unknown") else token.split()[0]
            exchange = session.call(at, "device" if op.startswith(("GetDevice", "GetCap", "GetServ", "GetSys")) else "media",
                                    op, auth=False, **params)
            check(name, exchange.payload, expected, exchange.sent)
        assert [c.answered_with for c in camera.calls] == list(EXPECTED[device])


# -- end to end: query_device and read_clock against the replayed cameras ------------

#: what query_device must learn from each camera that has the answers it asks for:
#: (profiles with their stream URIs, snapshot URI, media XAddr it must not contact)
QUERIED = {
    "hikvision-oem-enp1a14-ir-25x": (
        [("Profile_1", "rtsp://192.168.1.182:554/Streaming/Channels/101?transportmode=mcast&profile=Profile_1"),
         ("Profile_2", None), ("Profile_3", None)], None, "http://192.168.1.182/onvif/Media"),
    "uniview-oem-gx728mf-ir28": (
        [("media_profile1", None), ("media_profile2", None), ("media_profile3", None)], None, "http://192.168.1.127:80/onvif/media"),
    "uniview-oem-sunba-performance": (
        [("media_profile1", None), ("media_profile2", None), ("media_profile3", None)], None, "http://162.191.54.181:80/onvif/media"),
    "xiongmai-xm530-sunba": ([("000", None), ("001", None)], None, "http://192.168.15.40:8899/onvif/Media"),
    # no GetServices: answered with a fault, the client falls back to GetCapabilities
    "dlink-dcs-6511": ([("Profile1", None), ("Profile2", None)], None, "http://192.168.1.33:80/onvif/device_service"),
    "unbranded-ipd-h4k8m05-bs": (
        [("MainStream", "rtsp://192.168.15.40:554/1/h264major"), ("SubStream", None)],
        "http://192.168.15.40/jpgimage/1/image.jpg", "http://192.168.15.40:8999/onvif/media_service"),
    "ipnc-ipg-8150pss": ([("PROFILE_000", "rtsp://10.200.1.2/live/0/MAIN"), ("PROFILE_001", None)], None,
                         "http://10.200.1.2/onvif/media_service"),
}


@pytest.mark.usefixtures("onvif_wsdls")
@pytest.mark.parametrize("device", sorted(QUERIED))
def test_query_device_against_a_replayed_camera(device):
    streams, snapshot, media = QUERIED[device]
    expected = EXPECTED[device]
    with ReplayCamera(device) as camera:
        info = query_device(camera.xaddr, timeout=3.0, clock_samples=1)
        now = datetime.now(timezone.utc)
    assert (info.manufacturer, info.model, info.firmware, info.serial, info.hardware_id) == expected["GetDeviceInformation.xml"]
    assert [(p.token, p.stream_uri) for p in info.profiles] == streams
    assert [(p.token, p.name, p.encoding, p.width, p.height) for p in info.profiles] == [
        (p.token, p.name, p.encoding, p.width, p.height) for p in expected["GetProfiles.xml"]]
    assert info.snapshot_uri == snapshot
    # the camera names its media service at its own LAN address: not contacted, media asked at the device address
    assert info.skipped_xaddrs == [media]
    assert {c.path for c in camera.calls} == {"/onvif/device_service"}
    camera_utc = expected["GetSystemDateAndTime.xml"][0]
    assert abs(info.clock_offset_s - (camera_utc - now).total_seconds()) < 5
    assert info.clock_source == "UTCDateTime"
    operations = [c.operation for c in camera.calls]
    assert operations[:2] == ["GetSystemDateAndTime", "GetDeviceInformation"]
    assert ("GetCapabilities" in operations) == (device == "dlink-dcs-6511")


@pytest.mark.parametrize("device", sorted(d for d, n, _ in ROWS if n == "GetSystemDateAndTime.xml"))
def test_read_clock_against_a_replayed_camera(device):
    expected = EXPECTED[device]["GetSystemDateAndTime.xml"]
    with ReplayCamera(device) as camera:
        info = read_clock(camera.xaddr, timeout=3.0)
        now = datetime.now(timezone.utc)
    assert abs(info.clock_offset_s - (expected[0] - now).total_seconds()) < 5
    assert info.clock_uncertainty_s < 5
    assert info.clock_source == clock_source(expected)
    assert [c.operation for c in camera.calls] == ["GetSystemDateAndTime"]


def test_hikvision_probe_match_over_udp():
    endpoint, xaddrs, types, scopes = EXPECTED["hikvision-ds-2cd3955fwd-iws"]["ProbeMatches.xml"]
    with ReplayCamera("hikvision-ds-2cd3955fwd-iws") as camera:
        target = f"127.0.0.1:{camera.discovery_port}"
        result = probe(2.0, [target], port=camera.discovery_port, multicast=False)
        (device,) = discover(1.0, [target], port=camera.discovery_port, multicast=False, query_devices=False)
    (match,) = result.matches
    assert (match.endpoint, match.xaddrs, match.types, match.source) == (endpoint, xaddrs, types, target)
    assert Scopes.from_uris(match.scopes) == scopes
    assert result.bad_answers == {} and result.silent == []
    assert (device.endpoint, device.xaddrs, device.scopes, device.error) == (endpoint, list(xaddrs), scopes, None)
