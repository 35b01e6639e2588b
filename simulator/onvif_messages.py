"""The SOAP answers of the simulated ONVIF camera, spec-shaped or deliberately not.

Owns the XML text the simulator sends (:mod:`.onvif` decides *when*) and
the list of :data:`QUIRKS` — ways real cameras deviate, each one selectable
so a test can show the client survives it (or reports it clearly).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"
NS_SCHEMA = "http://www.onvif.org/ver10/schema"
NS_ERROR = "http://www.onvif.org/ver10/error"

#: Every quirk the simulator can show. HTTP/SOAP ones:
QUIRKS = frozenset({
    "malformed_soap",      # answers cut off mid-document
    "xxe",                 # a DTD with an external entity reading /etc/passwd
    "entity_bomb",         # a DTD with nested entities ("billion laughs")
    "wrong_namespace",     # ONVIF elements in the wrong namespaces (tolerated)
    "bad_envelope",        # the envelope itself is not SOAP (an error)
    "html",                # a web login page instead of SOAP
    "hang",                # reads the request, never answers
    "oversized",           # an endless answer (chunked, no Content-Length)
    "missing_wrappers",    # SystemDateAndTime, Capabilities, MediaUri, Resolution wrappers left out
    "odd_date",            # no UTCDateTime; padded LocalDateTime with TZ "CST-08:00"
    "truncated_date",      # UTCDateTime whose Date has no Day (TP-Link C200)
    "auth_preauth",        # credentials demanded on GetSystemDateAndTime/GetCapabilities/GetServices
    "no_date_header",      # no HTTP Date header (with auth_preauth: clock cannot be learned)
    "no_services",         # pre-2.0 device: GetServices is ActionNotSupported
    "no_ntp",              # GetNTP/SetNTP are ActionNotSupported (cameras without NTP)
    # WS-Discovery ones:
    "malformed_probe_match",  # the ProbeMatches datagram is cut off
    "raw_scopes",          # unencoded spaces in the name scope
})

_WRONG_NAMESPACES = {
    # seen: device-schema elements in the device WSDL namespace, and
    # ver20 service namespaces answering ver10 requests
    "tds": "http://www.onvif.org/ver20/device/wsdl",
    "trt": "http://www.onvif.org/ver20/media/wsdl",
    "tt": NS_DEVICE,
}


@dataclass(frozen=True)
class Profile:
    token: str
    name: str
    width: int
    height: int
    encoding: str
    uri: str


def envelope(payload: str, quirks: frozenset[str]) -> bytes:
    """Wrap a payload (using prefixes tds/trt/tt/ter) in a SOAP 1.2 envelope, quirks applied."""
    ns = {"tds": NS_DEVICE, "trt": NS_MEDIA, "tt": NS_SCHEMA}
    if "wrong_namespace" in quirks:
        ns = dict(_WRONG_NAMESPACES)
    env = "urn:example:not-soap:envelope" if "bad_envelope" in quirks else NS_SOAP12
    declarations = " ".join(f'xmlns:{p}="{u}"' for p, u in ns.items())
    prologue = '<?xml version="1.0" encoding="UTF-8"?>'
    inject = ""
    if "xxe" in quirks:
        prologue += '<!DOCTYPE env:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        inject = "<tt:Note>&xxe;</tt:Note>"
    elif "entity_bomb" in quirks:
        levels = ['<!ENTITY lol0 "lol">'] + [
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
        ]
        prologue += f"<!DOCTYPE env:Envelope [{''.join(levels)}]>"
        inject = "<tt:Note>&lol9;</tt:Note>"
    text = (
        f'{prologue}<env:Envelope xmlns:env="{env}" xmlns:ter="{NS_ERROR}" {declarations}>'
        f"<env:Body>{payload}{inject}</env:Body></env:Envelope>"
    )
    data = text.encode("utf-8")
    if "malformed_soap" in quirks:
        data = data[: len(data) * 3 // 5]
    return data


def fault(code: str, subcode: str, reason: str) -> str:
    return (
        "<env:Fault><env:Code>"
        f"<env:Value>env:{code}</env:Value><env:Subcode><env:Value>ter:{subcode}</env:Value></env:Subcode>"
        f'</env:Code><env:Reason><env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason></env:Fault>'
    )


def system_date_and_time(camera_utc: datetime, quirks: frozenset[str], date_time_type: str = "NTP") -> str:
    """GetSystemDateAndTimeResponse for the camera's clock reading (whole seconds)."""
    local = camera_utc + timedelta(hours=8)  # the simulated camera lives in China Standard Time
    parts = [f"<tt:DateTimeType>{escape(date_time_type)}</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"]
    if "odd_date" in quirks:
        parts.append("<tt:TimeZone><tt:TZ>CST-08:00</tt:TZ></tt:TimeZone>")
        parts.append(f"<tt:LocalDateTime>{_date_time(local, pad=True)}</tt:LocalDateTime>")
    else:
        parts.append("<tt:TimeZone><tt:TZ>CST-8</tt:TZ></tt:TimeZone>")
        parts.append(f"<tt:UTCDateTime>{_date_time(camera_utc, no_day='truncated_date' in quirks)}</tt:UTCDateTime>")
        parts.append(f"<tt:LocalDateTime>{_date_time(local)}</tt:LocalDateTime>")
    inner = "".join(parts)
    if "missing_wrappers" not in quirks:
        inner = f"<tds:SystemDateAndTime>{inner}</tds:SystemDateAndTime>"
    return f"<tds:GetSystemDateAndTimeResponse>{inner}</tds:GetSystemDateAndTimeResponse>"


def _date_time(t: datetime, *, pad: bool = False, no_day: bool = False) -> str:
    def n(value: int) -> str:
        return f" {value:02d} " if pad else str(value)

    day = "" if no_day else f"<tt:Day>{n(t.day)}</tt:Day>"
    return (
        f"<tt:Time><tt:Hour>{n(t.hour)}</tt:Hour><tt:Minute>{n(t.minute)}</tt:Minute>"
        f"<tt:Second>{n(t.second)}</tt:Second></tt:Time>"
        f"<tt:Date><tt:Year>{t.year}</tt:Year><tt:Month>{n(t.month)}</tt:Month>{day}</tt:Date>"
    )


def ntp(from_dhcp: bool, servers: list[tuple[str, str]]) -> str:
    """GetNTPResponse: ``servers`` are (type, address), type IPv4, IPv6 or DNS."""
    element = {"IPv4": "IPv4Address", "IPv6": "IPv6Address", "DNS": "DNSname"}
    manual = "".join(f"<tt:NTPManual><tt:Type>{t}</tt:Type><tt:{element[t]}>{escape(a)}</tt:{element[t]}></tt:NTPManual>"
                     for t, a in servers)
    return (f"<tds:GetNTPResponse><tds:NTPInformation><tt:FromDHCP>{str(from_dhcp).lower()}</tt:FromDHCP>{manual}"
            "</tds:NTPInformation></tds:GetNTPResponse>")


def device_information(manufacturer: str, model: str, firmware: str, serial: str, hardware: str) -> str:
    return (
        "<tds:GetDeviceInformationResponse>"
        f"<tds:Manufacturer>{escape(manufacturer)}</tds:Manufacturer><tds:Model>{escape(model)}</tds:Model>"
        f"<tds:FirmwareVersion>{escape(firmware)}</tds:FirmwareVersion>"
        f"<tds:SerialNumber>{escape(serial)}</tds:SerialNumber><tds:HardwareId>{escape(hardware)}</tds:HardwareId>"
        "</tds:GetDeviceInformationResponse>"
    )


def services(device_xaddr: str, media_xaddr: str) -> str:
    entries = "".join(
        f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{escape(x)}</tds:XAddr>"
        "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
        for ns, x in ((NS_DEVICE, device_xaddr), (NS_MEDIA, media_xaddr))
    )
    return f"<tds:GetServicesResponse>{entries}</tds:GetServicesResponse>"


def capabilities(device_xaddr: str, media_xaddr: str, quirks: frozenset[str]) -> str:
    inner = (
        f"<tt:Device><tt:XAddr>{escape(device_xaddr)}</tt:XAddr></tt:Device>"
        f"<tt:Media><tt:XAddr>{escape(media_xaddr)}</tt:XAddr>"
        "<tt:StreamingCapabilities><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
        "</tt:StreamingCapabilities></tt:Media>"
    )
    if "missing_wrappers" not in quirks:
        inner = f"<tds:Capabilities>{inner}</tds:Capabilities>"
    return f"<tds:GetCapabilitiesResponse>{inner}</tds:GetCapabilitiesResponse>"


def profiles(items: list[Profile], quirks: frozenset[str]) -> str:
    out = []
    for p in items:
        resolution = f"<tt:Width>{p.width}</tt:Width><tt:Height>{p.height}</tt:Height>"
        if "missing_wrappers" not in quirks:
            resolution = f"<tt:Resolution>{resolution}</tt:Resolution>"
        out.append(
            f'<trt:Profiles token="{escape(p.token)}" fixed="true"><tt:Name>{escape(p.name)}</tt:Name>'
            f'<tt:VideoSourceConfiguration token="vsc"><tt:Name>source</tt:Name><tt:UseCount>2</tt:UseCount>'
            f"<tt:SourceToken>vs</tt:SourceToken>"
            f'<tt:Bounds x="0" y="0" width="{p.width}" height="{p.height}"/></tt:VideoSourceConfiguration>'
            f'<tt:VideoEncoderConfiguration token="vec-{escape(p.token)}"><tt:Name>encoder</tt:Name>'
            f"<tt:UseCount>1</tt:UseCount><tt:Encoding>{p.encoding}</tt:Encoding>{resolution}"
            "<tt:Quality>5</tt:Quality></tt:VideoEncoderConfiguration></trt:Profiles>"
        )
    return f"<trt:GetProfilesResponse>{''.join(out)}</trt:GetProfilesResponse>"


def media_uri(operation: str, uri: str, quirks: frozenset[str]) -> str:
    """GetStreamUriResponse / GetSnapshotUriResponse."""
    inner = f"<tt:Uri>{escape(uri)}</tt:Uri>"
    if "missing_wrappers" not in quirks:
        inner = (
            f"<trt:MediaUri>{inner}<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri>"
        )
    return f"<trt:{operation}Response>{inner}</trt:{operation}Response>"


def endless(chunk_size: int = 65536, total: int = 64 * 1024 * 1024):
    """The body of an "oversized" answer: a SOAP start, then padding for ``total`` bytes."""
    yield f'<?xml version="1.0"?><env:Envelope xmlns:env="{NS_SOAP12}"><env:Body><!-- '.encode()
    padding = b"x" * chunk_size
    for _ in range(total // chunk_size):
        yield padding


HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Login</title></head>"
    b"<body><form action='/login'><input name='user'><input type='password' name='pw'></form></body></html>"
)
