"""Reading and setting one ONVIF camera's clock: its time, its NTP servers, and the two ways to fix it.

Owns the device-service time calls beyond the reading :mod:`.onvif_client` does:

* :func:`read_time_settings` — GetSystemDateAndTime (offset measured as
  :func:`~.onvif_client.read_clock` does, plus the camera's ``DateTimeType``
  and time zone) and GetNTP (the servers it is told to use).
* :func:`set_ntp` — SetNTP (``FromDHCP`` false, the one server given, IPv4,
  IPv6 or DNS name), then SetSystemDateAndTime ``DateTimeType=NTP`` so the
  camera actually follows it; the camera's clock is read again afterwards.
* :func:`sync_time` — SetSystemDateAndTime ``DateTimeType=Manual`` with the
  host's UTC time, sent so the camera's whole second starts when the host's
  does (half the measured round trip ahead), then read back.

Cameras take whole seconds: a manual set leaves the camera within about half
a second plus the round-trip jitter of the host.  Every call is signed with the
camera's own clock (the offset measured first), as the camera insists.
Failures are :class:`~labwitness.errors.DeviceError` subclasses; a camera that
refuses a setting it does not support or a value it does not take raises
:class:`~labwitness.errors.DeviceSettingRefusedError` naming the setting.
Passwords are never put in a message.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from xml.etree.ElementTree import Element

from camera_discovery import xaddr_policy, xmlsafe
from camera_discovery.models import DeviceInfo
from camera_discovery.onvif_client import DeviceQuery
from camera_discovery.soap import SoapSession
from labwitness.clock import Clock, SystemClock
from labwitness.errors import DeviceAuthError, DeviceError, DeviceSettingRefusedError, SoapFaultError, ValidationError

#: a DNS name as SetNTP takes it (RFC 1123 labels); anything else is refused before the camera sees it
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


@dataclass(frozen=True)
class NtpServer:
    """One NTP server as ONVIF names it: ``type`` is ``IPv4``, ``IPv6`` or ``DNS``."""

    type: str
    address: str


@dataclass
class TimeSettings:
    """What a camera says about its clock, read live."""

    #: camera clock minus host clock (seconds) and the half-width of that interval
    clock_offset_s: float | None = None
    clock_uncertainty_s: float | None = None
    #: ``NTP`` or ``Manual`` (what the camera said; None when it did not say)
    date_time_type: str | None = None
    time_zone: str | None = None
    daylight_savings: bool | None = None
    #: from GetNTP; None when the camera does not answer GetNTP
    ntp_from_dhcp: bool | None = None
    ntp_servers: list[NtpServer] = field(default_factory=list)
    #: why GetNTP gave nothing (the camera's fault text), when it did not
    ntp_error: str | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("clock_offset_s", "clock_uncertainty_s"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        return d


def ntp_server(value: str) -> NtpServer:
    """An admin's NTP server text → :class:`NtpServer`, or :class:`ValidationError`."""
    text = (value or "").strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if _HOSTNAME.match(text) and not text.replace(".", "").isdigit():
            return NtpServer("DNS", text.rstrip("."))
        raise ValidationError(f"NTP 服务器地址无效 / invalid NTP server {text[:100]!r}: give an IPv4/IPv6 address "
                              "or a host name") from None
    if ip.is_multicast or ip.is_unspecified:
        raise ValidationError(f"NTP 服务器地址无效 / {text!r} cannot be an NTP server (multicast or unspecified)")
    return NtpServer("IPv4" if ip.version == 4 else "IPv6", str(ip))


def read_time_settings(xaddr: str, username: str | None = None, password: str | None = None, timeout: float = 5.0, *,
                       clock: Clock | None = None, samples: int = 2) -> TimeSettings:
    """The camera's clock offset, date-time type, time zone and NTP servers (see the module docstring)."""
    with _session(xaddr, username, password, timeout, clock) as (session, query):
        return _settings(query, samples)


def set_ntp(xaddr: str, server: str, username: str | None = None, password: str | None = None, timeout: float = 5.0,
            *, clock: Clock | None = None) -> TimeSettings:
    """Make the camera follow the NTP server ``server`` (an address or host name); its settings after."""
    target = ntp_server(server)
    entry = {"Type": target.type, {"IPv4": "IPv4Address", "IPv6": "IPv6Address", "DNS": "DNSname"}[target.type]: target.address}
    with _session(xaddr, username, password, timeout, clock) as (session, query):
        before = _settings(query, 1)
        _set(query, "SetNTP", f"NTP 服务器 {target.address} / NTP server {target.address}", FromDHCP=False, NTPManual=[entry])
        _set(query, "SetSystemDateAndTime", "时间来源 NTP / date-time type NTP", DateTimeType="NTP",
             DaylightSavings=bool(before.daylight_savings))
        return _settings(query, 2)


def sync_time(xaddr: str, username: str | None = None, password: str | None = None, timeout: float = 5.0, *,
              clock: Clock | None = None) -> TimeSettings:
    """Set the camera's clock (``Manual``) to the host's UTC now; its settings after (the new offset)."""
    with _session(xaddr, username, password, timeout, clock) as (session, query):
        before = _settings(query, 1)
        # a trial call, whose round trip says how far ahead of the host the set must be sent
        rtt = query.time_call().rtt_s
        now = session.clock.now().timestamp()
        # send at (whole second - rtt/2): the camera reads the request about rtt/2 later, at the whole second
        second = math.ceil(now + rtt / 2 + 0.05)
        session.clock.sleep(max(0.0, second - rtt / 2 - now))
        when = datetime.fromtimestamp(second, timezone.utc)
        _set(query, "SetSystemDateAndTime", f"时间 {when:%Y-%m-%d %H:%M:%S} UTC / time {when:%Y-%m-%d %H:%M:%S} UTC",
             DateTimeType="Manual", DaylightSavings=bool(before.daylight_savings),
             UTCDateTime={"Date": {"Year": when.year, "Month": when.month, "Day": when.day},
                          "Time": {"Hour": when.hour, "Minute": when.minute, "Second": when.second}})
        # the signing offset changed with the camera's clock: the reading below is unsigned first anyway
        session.clock_offset_s = 0.0
        return _settings(query, 2)


# -- inside one session -------------------------------------------------------------------
class _session:
    """A :class:`SoapSession` to the host of ``xaddr`` only, and the query that measures and signs."""

    def __init__(self, xaddr: str, username: str | None, password: str | None, timeout: float,
                 clock: Clock | None) -> None:
        allowed = xaddr_policy.allowed_hosts(xaddr_policy.url_host(xaddr) or "")
        self.session = SoapSession(username, password, timeout, clock=clock or SystemClock(), allowed_hosts=allowed)
        self.query = DeviceQuery(self.session, xaddr, DeviceInfo(xaddr=xaddr))

    def __enter__(self) -> tuple[SoapSession, DeviceQuery]:
        return self.session, self.query

    def __exit__(self, exc_type, exc, tb) -> None:
        self.session.close()
        if isinstance(exc, DeviceError):
            exc.partial = self.query.info


def _settings(query: DeviceQuery, samples: int) -> TimeSettings:
    query.measure_clock(samples)
    out = TimeSettings(clock_offset_s=query.info.clock_offset_s, clock_uncertainty_s=query.info.clock_uncertainty_s)
    payload = query.time_call().payload  # the whole answer: DateTimeType, TZ, DaylightSavings
    _date_time_fields(payload, out)
    try:
        _ntp_fields(query.call("device", "GetNTP").payload, out)
    except DeviceAuthError:
        # GetSystemDateAndTime needs no credentials, GetNTP does: refused, the stored
        # credentials are wrong (or not an administrator's), which the admin must hear
        raise
    except SoapFaultError as e:
        # many cameras without NTP support answer ActionNotSupported
        out.ntp_error = str(e)
    return out


def _date_time_fields(payload: Element, out: TimeSettings) -> None:
    kind = (xmlsafe.text(payload, "DateTimeType") or "").strip()
    out.date_time_type = kind or None
    out.time_zone = (xmlsafe.text(payload, "TimeZone", "TZ") or "").strip() or None
    dst = (xmlsafe.text(payload, "DaylightSavings") or "").strip().lower()
    out.daylight_savings = dst in ("true", "1") if dst else None


def _ntp_fields(payload: Element, out: TimeSettings) -> None:
    info = xmlsafe.first(payload, "NTPInformation") or payload
    dhcp = (xmlsafe.text(info, "FromDHCP") or "").strip().lower()
    out.ntp_from_dhcp = dhcp in ("true", "1") if dhcp else None
    servers = list(xmlsafe.descendants(info, "NTPManual"))
    if out.ntp_from_dhcp:
        servers += list(xmlsafe.descendants(info, "NTPFromDHCP"))
    for el in servers:
        kind = (xmlsafe.text(el, "Type") or "").strip()
        address = next(((xmlsafe.text(el, name) or "").strip() for name in ("IPv4Address", "IPv6Address", "DNSname")
                        if (xmlsafe.text(el, name) or "").strip()), "")
        if address:
            out.ntp_servers.append(NtpServer(kind or "?", address))


def _set(query: DeviceQuery, operation: str, what: str, **params: object) -> None:
    try:
        query.call("device", operation, **params)
    except SoapFaultError as e:
        raise DeviceSettingRefusedError(
            f"摄像机拒绝设置{what.split(' / ')[0]} / the camera refused {operation} ({what.split(' / ')[-1]}): {e}",
            e.subcodes) from None


__all__ = ["NtpServer", "TimeSettings", "ntp_server", "read_time_settings", "set_ntp", "sync_time"]
