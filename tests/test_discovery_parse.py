"""Table tests of the pure parts of camera discovery: every camera deviation
handled in :mod:`camera_discovery.onvif_parse`, :mod:`.ws_discovery`,
:mod:`.xmlsafe`, :mod:`.soap` and :mod:`.targets` has its row here. The same
deviations over real sockets are in ``test_discovery_network.py``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from camera_discovery import onvif_parse as parse
from camera_discovery import soap, ws_discovery, xmlsafe
from camera_discovery.models import DiscoveredDevice, MediaProfile, ProbeMatch, Scopes
from camera_discovery.targets import parse_targets
from labwitness.errors import DeviceAuthError, DeviceProtocolError, DiscoveryError, SoapFaultError

TDS = 'xmlns:tds="http://www.onvif.org/ver10/device/wsdl"'
TT = 'xmlns:tt="http://www.onvif.org/ver10/schema"'
HOST_NOW = datetime(2026, 11, 25, 14, 0, 0, tzinfo=timezone.utc)


def payload(xml: str):
    return xmlsafe.parse(xml.encode(), "test")


def dt(h: int, m: int, s: int, *, year=2026, month=11, day=25, pad=False, day_el=True) -> str:
    f = (lambda v: f" {v:02d} ") if pad else str
    d = f"<tt:Day>{f(day)}</tt:Day>" if day_el else ""
    return (f"<tt:Time><tt:Hour>{f(h)}</tt:Hour><tt:Minute>{f(m)}</tt:Minute><tt:Second>{f(s)}</tt:Second></tt:Time>"
            f"<tt:Date><tt:Year>{year}</tt:Year><tt:Month>{f(month)}</tt:Month>{d}</tt:Date>")


# -- GetSystemDateAndTime ------------------------------------------------------

DATE_CASES = [
    ("spec: UTCDateTime",
     f"<tds:R {TDS} {TT}><tds:SystemDateAndTime><tt:UTCDateTime>{dt(14, 0, 7)}</tt:UTCDateTime>"
     "</tds:SystemDateAndTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("missing SystemDateAndTime wrapper",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime>{dt(14, 0, 7)}</tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("missing Time/Date wrappers",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime><tt:Hour>14</tt:Hour><tt:Minute>0</tt:Minute><tt:Second>7</tt:Second>"
     "<tt:Year>2026</tt:Year><tt:Month>11</tt:Month><tt:Day>25</tt:Day></tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("wrong namespace: tt elements in the tds namespace",
     f'<tds:R {TDS}><tds:SystemDateAndTime><tds:UTCDateTime>{dt(14, 0, 7).replace("tt:", "tds:")}'
     "</tds:UTCDateTime></tds:SystemDateAndTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("no namespace at all",
     f"<R><SystemDateAndTime><UTCDateTime>{dt(14, 0, 7).replace('tt:', '')}</UTCDateTime></SystemDateAndTime></R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("only LocalDateTime, POSIX TZ CST-8",
     f"<tds:R {TDS} {TT}><tds:SystemDateAndTime><tt:TimeZone><tt:TZ>CST-8</tt:TZ></tt:TimeZone>"
     f"<tt:LocalDateTime>{dt(22, 0, 7)}</tt:LocalDateTime></tds:SystemDateAndTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "LocalDateTime + TZ CST-8"),
    ("only LocalDateTime, TZ CST-08:00, padded numbers",
     f"<tds:R {TDS} {TT}><tds:SystemDateAndTime><tt:TimeZone><tt:TZ>CST-08:00</tt:TZ></tt:TimeZone>"
     f"<tt:LocalDateTime>{dt(22, 0, 7, pad=True)}</tt:LocalDateTime></tds:SystemDateAndTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "LocalDateTime + TZ CST-08:00"),
    ("only LocalDateTime, no TZ: read as UTC",
     f"<tds:R {TDS} {TT}><tds:SystemDateAndTime><tt:LocalDateTime>{dt(14, 0, 7)}</tt:LocalDateTime>"
     "</tds:SystemDateAndTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "LocalDateTime (time zone None unknown, read as UTC)"),
    ("empty UTCDateTime, LocalDateTime filled",
     f"<tds:R {TDS} {TT}><tds:SystemDateAndTime><tt:TimeZone><tt:TZ>GMT0</tt:TZ></tt:TimeZone><tt:UTCDateTime/>"
     f"<tt:LocalDateTime>{dt(14, 0, 7)}</tt:LocalDateTime></tds:SystemDateAndTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "LocalDateTime + TZ GMT0"),
    ("Date without Day (TP-Link C200)",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime>{dt(14, 0, 7, day_el=False)}</tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("Second missing: minute resolution",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime><tt:Time><tt:Hour>14</tt:Hour><tt:Minute>1</tt:Minute></tt:Time>"
     "<tt:Date><tt:Year>2026</tt:Year><tt:Month>11</tt:Month><tt:Day>25</tt:Day></tt:Date></tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 1, 0, tzinfo=timezone.utc), 60.0, "UTCDateTime"),
    ("two-digit year",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime>{dt(14, 0, 7, year=26)}</tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("Second=60",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime>{dt(14, 0, 60)}</tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 1, 0, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("ISO string instead of elements",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime>2026-11-25T14:00:07Z</tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, tzinfo=timezone.utc), 1.0, "UTCDateTime"),
    ("ISO string with fraction and zone",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime>2026-11-25T22:00:07.250+08:00</tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 0, 7, 250000, tzinfo=timezone.utc), 1e-3, "UTCDateTime"),
    ("truncated ISO string without seconds",
     f"<tds:R {TDS} {TT}><tt:UTCDateTime>2026-11-25 14:01</tt:UTCDateTime></tds:R>",
     datetime(2026, 11, 25, 14, 1, 0, tzinfo=timezone.utc), 60.0, "UTCDateTime"),
]


@pytest.mark.parametrize("xml,expected,resolution,source", [c[1:] for c in DATE_CASES], ids=[c[0] for c in DATE_CASES])
def test_system_date_and_time(xml, expected, resolution, source):
    reading = parse.parse_system_date_and_time(payload(xml), HOST_NOW)
    assert reading.utc == expected
    assert reading.resolution_s == resolution
    assert reading.source == source


def test_date_without_day_across_midnight_picks_the_nearest_day():
    host = datetime(2026, 11, 25, 23, 59, 50, tzinfo=timezone.utc)  # camera already in the 26th
    xml = f"<tds:R {TDS} {TT}><tt:UTCDateTime>{dt(0, 0, 5, day_el=False)}</tt:UTCDateTime></tds:R>"
    assert parse.parse_system_date_and_time(payload(xml), host).utc == datetime(2026, 11, 26, 0, 0, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize("xml,message", [
    (f"<tds:R {TDS} {TT}><tt:UTCDateTime>{dt(14, 0, 7, month=13)}</tt:UTCDateTime></tds:R>", "invalid date"),
    (f"<tds:R {TDS} {TT}><tds:SystemDateAndTime/></tds:R>", "neither UTCDateTime nor LocalDateTime"),
    (f"<tds:R {TDS} {TT}><tt:UTCDateTime>yesterday</tt:UTCDateTime></tds:R>", "unreadable"),
    (f"<tds:R {TDS} {TT}><tt:UTCDateTime><tt:Hour>x</tt:Hour></tt:UTCDateTime></tds:R>", "not a number"),
])
def test_unusable_dates_are_clear_errors(xml, message):
    with pytest.raises(DeviceProtocolError, match=message):
        parse.parse_system_date_and_time(payload(xml), HOST_NOW)


@pytest.mark.parametrize("tz,offset", [
    ("CST-8", timedelta(hours=8)),
    ("CST-08:00", timedelta(hours=8)),
    ("EST5EDT,M3.2.0,M11.1.0", timedelta(hours=-5)),
    ("GMT0", timedelta(0)),
    ("UTC", timedelta(0)),
    ("<+0530>-5:30", timedelta(hours=5, minutes=30)),
    ("IST-5:30", timedelta(hours=5, minutes=30)),
    ("Asia/Shanghai", None),
    ("", None),
])
def test_posix_tz(tz, offset):
    assert parse.parse_posix_tz(tz) == offset


# -- device information, services, profiles, URIs --------------------------------

def test_device_information_by_local_name():
    xml = ('<x:GetDeviceInformationResponse xmlns:x="urn:vendor"><x:Manufacturer> ACME </x:Manufacturer>'
           "<x:Model>Eye</x:Model><x:FirmwareVersion>V5</x:FirmwareVersion><x:SerialNumber>S1</x:SerialNumber>"
           "</x:GetDeviceInformationResponse>")
    assert parse.parse_device_information(payload(xml)) == {
        "manufacturer": "ACME", "model": "Eye", "firmware": "V5", "serial": "S1", "hardware_id": None}


def test_services_and_capabilities():
    services = (f"<tds:R {TDS}><tds:Service><tds:Namespace>{parse.NS_MEDIA}</tds:Namespace>"
                "<tds:XAddr>http://cam/media</tds:XAddr></tds:Service></tds:R>")
    assert parse.parse_services(payload(services)) == {parse.NS_MEDIA: "http://cam/media"}
    wrapped = (f"<tds:R {TDS} {TT}><tds:Capabilities><tt:Media><tt:XAddr>http://cam/m</tt:XAddr></tt:Media>"
               "<tt:Device><tt:XAddr>http://cam/d</tt:XAddr></tt:Device></tds:Capabilities></tds:R>")
    # Camera quirk: no Capabilities wrapper
    bare = wrapped.replace("<tds:Capabilities>", "").replace("</tds:Capabilities>", "")
    for xml in (wrapped, bare):
        assert parse.parse_capabilities(payload(xml)) == {parse.NS_MEDIA: "http://cam/m", parse.NS_DEVICE: "http://cam/d"}


PROFILE = ('<trt:Profiles token="{token}" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" {tt}><tt:Name>main</tt:Name>'
           "<tt:VideoEncoderConfiguration token='v'><tt:Name>enc</tt:Name><tt:Encoding>h264</tt:Encoding>{res}"
           "</tt:VideoEncoderConfiguration></trt:Profiles>")


@pytest.mark.parametrize("variant,xml", [
    ("spec", PROFILE.format(token="P1", tt=TT, res="<tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution>")),
    ("no Resolution wrapper", PROFILE.format(token="P1", tt=TT, res="<tt:Width>1920</tt:Width><tt:Height>1080</tt:Height>")),
    ("Token attribute capitalised", PROFILE.format(token="P1", tt=TT, res="<tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution>").replace("token=\"P1\"", "Token=\"P1\"")),
    ("singular Profile element", PROFILE.format(token="P1", tt=TT, res="<tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution>").replace("trt:Profiles", "trt:Profile")),
])
def test_profiles(variant, xml):
    doc = payload(f'<trt:GetProfilesResponse xmlns:trt="http://www.onvif.org/ver10/media/wsdl">{xml}</trt:GetProfilesResponse>')
    assert parse.parse_profiles(doc) == [MediaProfile("P1", "main", "H264", 1920, 1080)]


def test_profile_without_token_is_skipped():
    xml = PROFILE.format(token="", tt=TT, res="")
    doc = payload(f'<trt:GetProfilesResponse xmlns:trt="http://www.onvif.org/ver10/media/wsdl">{xml}</trt:GetProfilesResponse>')
    assert parse.parse_profiles(doc) == []


@pytest.mark.parametrize("xml", [
    f"<trt:R xmlns:trt='urn:m' {TT}><trt:MediaUri><tt:Uri>rtsp://cam/1</tt:Uri></trt:MediaUri></trt:R>",
    f"<trt:R xmlns:trt='urn:m' {TT}><tt:Uri> rtsp://cam/1 </tt:Uri></trt:R>",  # no MediaUri wrapper
])
def test_uri(xml):
    assert parse.parse_uri(payload(xml)) == "rtsp://cam/1"


# -- safe XML ------------------------------------------------------------------

XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
BOMB = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(9))
        + b"]><r>&j;</r>")


@pytest.mark.parametrize("data,message", [
    (XXE, "DTD"),
    (BOMB, "DTD"),
    (b"<html><body>login</body></html>", "HTML page"),
    (b"<!DOCTYPE html><html></html>", "HTML page"),
    (b"<a><b></a>", "malformed XML"),
    (b"", "empty answer"),
    (b"<a>" + b"x" * 2000 + b"</a>", "larger than"),
])
def test_unsafe_or_broken_xml_is_refused(data, message):
    started = time.monotonic()
    with pytest.raises(DeviceProtocolError, match=message):
        xmlsafe.parse(data, "test", max_bytes=1000 if b"x" * 2000 in data else xmlsafe.MAX_XML_BYTES)
    assert time.monotonic() - started < 0.5  # nothing was expanded


def test_xxe_never_reads_the_file():
    with pytest.raises(DeviceProtocolError) as e:
        xmlsafe.parse(XXE, "test")
    assert "root:" not in str(e.value)


def test_gb2312_declared_documents_are_transcoded():
    data = '<?xml version="1.0" encoding="GB2312"?><r><Name>大厅摄像机</Name></r>'.encode("gb2312")
    assert xmlsafe.text(xmlsafe.parse(data, "test"), "Name") == "大厅摄像机"


def test_undeclared_prefixes_are_tolerated():
    data = b"<SOAP-ENV:Envelope><SOAP-ENV:Body><tds:R><tt:Hour>9</tt:Hour></tds:R></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    root = xmlsafe.parse(data, "test")
    assert xmlsafe.text(root, "Hour") == "9"
    assert xmlsafe.local(soap._payload(root, "test").tag) == "r"  # still accepted as an envelope


# -- SOAP envelopes and faults -----------------------------------------------------

ENV12 = 'xmlns:env="http://www.w3.org/2003/05/soap-envelope"'


def test_envelope_in_a_foreign_namespace_is_refused():
    root = payload('<env:Envelope xmlns:env="urn:not-soap"><env:Body><R/></env:Body></env:Envelope>')
    with pytest.raises(DeviceProtocolError, match="not a SOAP envelope"):
        soap._payload(root, "test")


def test_soap11_envelope_is_accepted():
    root = payload('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><R/></e:Body></e:Envelope>')
    assert soap._payload(root, "test").tag == "R"


@pytest.mark.parametrize("fault,kind", [
    # ONVIF spec: Sender / ter:NotAuthorized
    (f"<env:Fault {ENV12}><env:Code><env:Value>env:Sender</env:Value><env:Subcode><env:Value>ter:NotAuthorized</env:Value>"
     "</env:Subcode></env:Code><env:Reason><env:Text>Sender not Authorized</env:Text></env:Reason></env:Fault>", DeviceAuthError),
    # WS-Security fault code, SOAP 1.1 style
    ("<Fault><faultcode>wsse:FailedAuthentication</faultcode><faultstring>bad</faultstring></Fault>", DeviceAuthError),
    # Camera quirk: a Receiver fault whose only hint is the reason text
    (f"<env:Fault {ENV12}><env:Code><env:Value>env:Receiver</env:Value></env:Code>"
     "<env:Reason><env:Text>The action requested requires authorization</env:Text></env:Reason></env:Fault>", DeviceAuthError),
    (f"<env:Fault {ENV12}><env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>ter:ActionNotSupported</env:Value>"
     "</env:Subcode></env:Code><env:Reason><env:Text>nope</env:Text></env:Reason></env:Fault>", SoapFaultError),
])
def test_fault_classification(fault, kind):
    error = soap._fault_error(payload(fault), "test", 400)
    assert type(error) is kind
    if kind is SoapFaultError:
        assert error.subcodes == ("Receiver", "ActionNotSupported")


# -- WS-Discovery ------------------------------------------------------------------

def _matches(body: str, ns_d: str = ws_discovery.NS_WSD) -> bytes:
    return (f'<s:Envelope xmlns:s="{ws_discovery.NS_SOAP12}" xmlns:a="{ws_discovery.NS_WSA}" xmlns:d="{ns_d}">'
            f"<s:Header><a:RelatesTo>urn:uuid:1</a:RelatesTo></s:Header><s:Body><d:ProbeMatches>{body}"
            "</d:ProbeMatches></s:Body></s:Envelope>").encode()


MATCH = ("<d:ProbeMatch><a:EndpointReference><a:Address>{epr}</a:Address></a:EndpointReference>"
         "<d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>{scopes}</d:Scopes>"
         "<d:XAddrs>{xaddrs}</d:XAddrs></d:ProbeMatch>")
SCOPES = ("onvif://www.onvif.org/name/Lab%20A%20%E5%A4%A7%E5%8E%85 onvif://www.onvif.org/hardware/IPC-1 "
          "onvif://www.onvif.org/location/building/2 onvif://www.onvif.org/type/video_encoder")


@pytest.mark.parametrize("variant,data,endpoint,name", [
    ("spec", _matches(MATCH.format(epr="urn:uuid:ABC", scopes=SCOPES, xaddrs="http://10.0.0.5/onvif/device_service")),
     "urn:uuid:abc", "Lab A 大厅"),
    ("WS-Discovery 1.1 namespace", _matches(MATCH.format(epr="urn:uuid:abc", scopes=SCOPES, xaddrs="http://10.0.0.5/onvif/device_service"),
                                            "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01"), "urn:uuid:abc", "Lab A 大厅"),
    ("bare UUID endpoint", _matches(MATCH.format(epr="6f1e2d3c-0000-4000-8000-00000000abcd", scopes="", xaddrs="http://10.0.0.5/x")),
     "urn:uuid:6f1e2d3c-0000-4000-8000-00000000abcd", None),
    ("missing endpoint: keyed by XAddr", _matches(MATCH.format(epr="", scopes="", xaddrs="http://10.0.0.5/x")),
     "http://10.0.0.5/x", None),
    ("unencoded spaces in a scope", _matches(MATCH.format(epr="urn:uuid:abc", scopes="onvif://www.onvif.org/name/IP Camera 7 onvif://www.onvif.org/hardware/X", xaddrs="http://10.0.0.5/x")),
     "urn:uuid:abc", "IP Camera 7"),
])
def test_probe_matches(variant, data, endpoint, name):
    relates_to, matches = ws_discovery.parse_probe_matches(data, "10.0.0.5:3702")
    assert relates_to == "urn:uuid:1"
    assert [m.endpoint for m in matches] == [endpoint]
    assert Scopes.from_uris(matches[0].scopes).name == name


def test_probe_match_scopes_and_xaddrs():
    data = _matches(MATCH.format(epr="urn:uuid:abc", scopes=SCOPES, xaddrs="http://10.0.0.5/onvif/device_service http://[fe80::1]/onvif/device_service urn:x"))
    (match,) = ws_discovery.parse_probe_matches(data, "10.0.0.5:3702")[1]
    assert match.xaddrs == ("http://10.0.0.5/onvif/device_service", "http://[fe80::1]/onvif/device_service")
    assert Scopes.from_uris(match.scopes) == Scopes("Lab A 大厅", "IPC-1", "building/2")


def test_not_a_probe_match_is_an_error():
    with pytest.raises(DeviceProtocolError, match="not a ProbeMatches"):
        ws_discovery.parse_probe_matches(b"<Envelope><Body><Hello/></Body></Envelope>", "10.0.0.5:3702")


def test_probe_round_trip():
    message_id, types = ws_discovery.parse_probe(ws_discovery.build_probe("urn:uuid:9", "tds:Device"), "x")
    assert (message_id, types) == ("urn:uuid:9", ["tds:Device"])


def test_merging_answers_of_one_endpoint():
    a = ProbeMatch("urn:uuid:1", ("http://a/",), ("dn:NetworkVideoTransmitter",), ("s1",), "a:1")
    b = ProbeMatch("urn:uuid:1", ("http://a/", "http://b/"), ("tds:Device",), ("s1", "s2"), "b:1")
    assert a.merged(b) == ProbeMatch("urn:uuid:1", ("http://a/", "http://b/"),
                                     ("dn:NetworkVideoTransmitter", "tds:Device"), ("s1", "s2"), "a:1")


# -- targets -----------------------------------------------------------------------

@pytest.mark.parametrize("hosts,expected", [
    (["10.0.0.5"], [("10.0.0.5", 3702)]),
    (["10.0.0.5:8000", "10.0.0.5"], [("10.0.0.5", 8000), ("10.0.0.5", 3702)]),
    (["10.0.0.0/30"], [("10.0.0.1", 3702), ("10.0.0.2", 3702)]),
    (["10.0.0.7/30"], [("10.0.0.5", 3702), ("10.0.0.6", 3702)]),  # host bits set: the network meant
    (["10.0.0.5", "10.0.0.5"], [("10.0.0.5", 3702)]),
    (["localhost:9"], [("127.0.0.1", 9)]),
])
def test_targets(hosts, expected):
    assert parse_targets(hosts, 3702) == expected


def test_a_22_is_the_widest_range():
    assert len(parse_targets(["10.0.0.0/22"], 3702)) == 1022


@pytest.mark.parametrize("hosts,message", [
    (["10.0.0.0/21"], "larger than a /22"),
    (["10.0.0.0/8"], "larger than a /22"),
    ([f"10.0.{4 * i}.0/22" for i in range(2)], "more than 1024"),
    (["10.0.0.5:http"], "not a valid port"),
    (["10.0.0.5:70000"], "port out of range"),
    (["10.0.0.300/24"], "not a valid network"),
    (["fe80::1"], "IPv6"),
    (["no-such-host.invalid"], "cannot resolve"),
])
def test_bad_targets_are_refused(hosts, message):
    with pytest.raises(DiscoveryError, match=message):
        parse_targets(hosts, 3702)


# -- JSON contract -------------------------------------------------------------------

def test_discovered_device_json_keys():
    device = DiscoveredDevice(endpoint="urn:uuid:1", profiles=[MediaProfile("P", "n", "H264", 1, 2, "rtsp://x")],
                              clock_offset_s=1.23456)
    out = device.to_json()
    assert list(out) == ["endpoint", "xaddrs", "manufacturer", "model", "serial", "clock_offset_s", "profiles",
                         "scopes", "firmware", "snapshot_uri", "error", "skipped_xaddrs", "bad_replies"]
    assert out["profiles"] == [{"token": "P", "stream_uri": "rtsp://x", "width": 1, "height": 2, "encoding": "H264"}]
    assert out["scopes"] == {"name": None, "hardware": None, "location": None}
    assert out["clock_offset_s"] == 1.235
