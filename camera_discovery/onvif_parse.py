"""Reading ONVIF answers the way cameras really write them (pure functions).

Owns the translation of response payloads (already safely parsed, see
:mod:`.xmlsafe`) into plain values: the camera's time, device information,
service addresses, media profiles and URIs. Everything is matched by local
name with descendant fallback, so wrong or missing namespaces and missing
wrapper elements read the same as the spec's shape. Each other deviation is
commented where it is caught; each has a test in ``tests/test_discovery_parse.py``.
Real answers of Hikvision, Dahua, Uniview and other brands' cameras, kept
verbatim with their origin in ``tests/fixtures/onvif/``, are read by
``tests/test_discovery_real_devices.py`` (parsed, and over HTTP end to end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from xml.etree.ElementTree import Element

from camera_discovery import xmlsafe
from camera_discovery.models import MediaProfile
from labwitness.errors import DeviceProtocolError

NS_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"

#: GetCapabilities element → the service namespace GetServices would give
_CAPABILITY_NAMESPACES = {
    "device": NS_DEVICE,
    "media": NS_MEDIA,
    "events": "http://www.onvif.org/ver10/events/wsdl",
    "imaging": "http://www.onvif.org/ver20/imaging/wsdl",
    "ptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "analytics": "http://www.onvif.org/ver20/analytics/wsdl",
}


@dataclass(frozen=True)
class CameraTime:
    """The camera's UTC time as it reported it."""

    utc: datetime
    #: the report's granularity: 1.0 for whole seconds, 60.0 without seconds
    resolution_s: float
    #: which element it came from, for people reading the result
    source: str


def parse_system_date_and_time(payload: Element, host_now: datetime) -> CameraTime:
    """GetSystemDateAndTimeResponse → :class:`CameraTime`.

    ``host_now`` (aware UTC) fills in date fields the camera left out.
    """
    # Camera quirk: the SystemDateAndTime wrapper is sometimes missing and
    # UTCDateTime/LocalDateTime sit directly in the response.
    sdt = xmlsafe.first(payload, "SystemDateAndTime") or payload
    utc_el = xmlsafe.first(sdt, "UTCDateTime")
    if utc_el is not None and _has_content(utc_el):
        when, resolution = _read_datetime(utc_el, host_now, timedelta(0))
        return CameraTime(when, resolution, "UTCDateTime")
    # Camera quirk: no UTCDateTime at all, only LocalDateTime (cheap
    # cameras; agsh/onvif#160). Convert with the POSIX TZ when there is one.
    local_el = xmlsafe.first(sdt, "LocalDateTime")
    if local_el is None or not _has_content(local_el):
        raise DeviceProtocolError("GetSystemDateAndTime: neither UTCDateTime nor LocalDateTime in the answer")
    tz = xmlsafe.text(sdt, "TimeZone", "TZ")
    utc_offset = parse_posix_tz(tz) if tz else None
    if utc_offset is None:
        when, resolution = _read_datetime(local_el, host_now, timedelta(0))
        return CameraTime(when, resolution, f"LocalDateTime (time zone {tz!r} unknown, read as UTC)")
    when, resolution = _read_datetime(local_el, host_now + utc_offset, utc_offset)
    return CameraTime(when, resolution, f"LocalDateTime + TZ {tz}")


def _has_content(el: Element) -> bool:
    return len(el) > 0 or bool((el.text or "").strip())


def _read_datetime(el: Element, local_now: datetime, utc_offset: timedelta) -> tuple[datetime, float]:
    """A tt:DateTime (or an ISO string in its place) → (aware UTC datetime, resolution)."""
    if len(el) == 0:
        # Camera quirk: the date and time as one xs:dateTime string instead
        # of Date/Time elements, with or without seconds and zone.
        return _iso_datetime((el.text or "").strip(), utc_offset)
    fields = {name: _int(xmlsafe.text(el, name)) for name in ("Year", "Month", "Day", "Hour", "Minute", "Second")}
    if fields["Hour"] is None or fields["Minute"] is None:
        raise DeviceProtocolError("GetSystemDateAndTime: the time has no Hour/Minute")
    # Camera quirk: Second missing ("truncated" time) — known to a minute only.
    resolution = 1.0 if fields["Second"] is not None else 60.0
    second = fields["Second"] or 0
    # Camera quirk: leap second or sloppy clocks report Second=60.
    extra = max(0, second - 59)
    second -= extra
    year = fields["Year"]
    if year is not None and year < 100:
        year += 2000  # Camera quirk: two-digit years
    missing_date = year is None or fields["Month"] is None or fields["Day"] is None
    try:
        if not missing_date:
            local = datetime(year, fields["Month"], fields["Day"], fields["Hour"], fields["Minute"], second)  # type: ignore[arg-type]
        else:
            # Camera quirk: Date without Day (TP-Link C200; edgexfoundry
            # device-onvif-camera#158) or no Date at all. Take the missing
            # parts from the host's date and pick the neighbouring day that
            # lies closest to the host: right for any offset under 12 h.
            local = _nearest(local_now, year, fields["Month"], fields["Day"], fields["Hour"], fields["Minute"], second)  # type: ignore[arg-type]
    except ValueError as e:
        raise DeviceProtocolError(f"GetSystemDateAndTime: invalid date/time {fields} ({e})") from None
    return (local - utc_offset).replace(tzinfo=timezone.utc) + timedelta(seconds=extra), resolution


def _nearest(now: datetime, year: int | None, month: int | None, day: int | None, hour: int, minute: int, second: int) -> datetime:
    base = now.replace(tzinfo=None)
    candidates = []
    for shift in (-1, 0, 1):
        d = base + timedelta(days=shift)
        try:
            candidates.append(datetime(year or d.year, month or d.month, day or d.day, hour, minute, second))
        except ValueError:
            continue
    if not candidates:
        raise ValueError("no valid date near the host's")
    return min(candidates, key=lambda c: abs((c - base).total_seconds()))


_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def _iso_datetime(value: str, utc_offset: timedelta) -> tuple[datetime, float]:
    m = _ISO.match(value)
    if not m:
        raise DeviceProtocolError(f"GetSystemDateAndTime: unreadable date/time {value[:60]!r}")
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    fraction = float(m.group(7) or 0)
    resolution = 60.0 if m.group(6) is None else (1e-3 if m.group(7) else 1.0)
    zone = m.group(8)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        utc_offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    elif zone == "Z":
        utc_offset = timedelta(0)
    try:
        local = datetime(year, month, day, hour, minute, second) + timedelta(seconds=fraction)
    except ValueError as e:
        raise DeviceProtocolError(f"GetSystemDateAndTime: invalid date/time {value!r} ({e})") from None
    return (local - utc_offset).replace(tzinfo=timezone.utc), resolution


_POSIX_TZ = re.compile(r"^\s*(?:<[^>]+>|[A-Za-z]{3,})?\s*([+-]?)(\d{1,2})(?::?(\d{2}))?")


def parse_posix_tz(tz: str) -> timedelta | None:
    """Local time minus UTC for a POSIX TZ such as ``CST-8`` (UTC+8), or None.

    POSIX counts west-positive, hence the sign flip. Camera quirk: many
    write the offset as ``hh:mm`` (``CST-08:00``) — still POSIX-signed, as in
    the Chinese-market firmwares seen (agsh/onvif#212). Daylight-saving rules
    after the standard offset are ignored: UTCDateTime is preferred anyway.
    """
    if tz.strip().upper() in ("UTC", "GMT", "Z"):
        return timedelta(0)
    m = _POSIX_TZ.match(tz)
    if not m:
        return None
    hours, minutes = int(m.group(2)), int(m.group(3) or 0)
    if hours > 14 or minutes >= 60:
        return None
    west = timedelta(hours=hours, minutes=minutes)
    return west if m.group(1) == "-" else -west


def _int(value: str | None) -> int | None:
    # Camera quirk: zero-padded or space-padded numbers (" 09 "), even "9.0".
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        raise DeviceProtocolError(f"GetSystemDateAndTime: not a number: {value[:20]!r}") from None


def parse_device_information(payload: Element) -> dict[str, str | None]:
    """GetDeviceInformationResponse → manufacturer/model/firmware/serial/hardware_id."""
    return {
        "manufacturer": xmlsafe.text(payload, "Manufacturer"),
        "model": xmlsafe.text(payload, "Model"),
        "firmware": xmlsafe.text(payload, "FirmwareVersion"),
        "serial": xmlsafe.text(payload, "SerialNumber"),
        "hardware_id": xmlsafe.text(payload, "HardwareId"),
    }


def parse_services(payload: Element) -> dict[str, str]:
    """GetServicesResponse → {namespace: XAddr}."""
    services: dict[str, str] = {}
    for service in xmlsafe.descendants(payload, "Service"):
        namespace, xaddr = xmlsafe.text(service, "Namespace"), xmlsafe.text(service, "XAddr")
        if namespace and xaddr:
            services.setdefault(namespace, xaddr)
    return services


def parse_capabilities(payload: Element) -> dict[str, str]:
    """GetCapabilitiesResponse → {namespace: XAddr}, in GetServices' terms."""
    # Camera quirk: the Capabilities wrapper is missing on some firmwares;
    # the per-service elements are then direct children of the response.
    capabilities = xmlsafe.first(payload, "Capabilities") or payload
    services: dict[str, str] = {}
    for child in capabilities:
        namespace = _CAPABILITY_NAMESPACES.get(xmlsafe.local(child.tag))
        xaddr = xmlsafe.text(child, "XAddr")
        if namespace and xaddr:
            services.setdefault(namespace, xaddr)
    return services


def parse_profiles(payload: Element) -> list[MediaProfile]:
    """GetProfilesResponse (Media1 or Media2) → profiles in the camera's order (main stream first)."""
    elements = xmlsafe.children(payload, "Profiles") or list(xmlsafe.descendants(payload, "Profiles"))
    if not elements:
        # Camera quirk: singular "Profile" elements (Media2 naming in a Media1 answer).
        elements = list(xmlsafe.descendants(payload, "Profile"))
    profiles = []
    for el in elements:
        token = xmlsafe.attr(el, "token") or xmlsafe.text(el, "token")
        if not token:
            continue  # without a token there is no GetStreamUri to ask
        encoder = xmlsafe.first(el, "VideoEncoderConfiguration")
        if encoder is None:
            # Media2 (ver20) shape: the encoder is Configurations/VideoEncoder,
            # with the same Encoding and Resolution inside (Xiongmai XM530,
            # tests/fixtures/onvif/xiongmai-xm530-sunba/Media2-GetProfiles.xml).
            # A Media2 answer to a request without Type lists empty
            # Configurations (Hikvision, Uniview OEMs): tokens and names only.
            encoder = xmlsafe.first(el, "Configurations", "VideoEncoder")
        # Camera quirk: Width/Height without the Resolution wrapper.
        resolution = (xmlsafe.first(encoder, "Resolution") or encoder) if encoder is not None else None
        encoding = xmlsafe.text(encoder, "Encoding") if encoder is not None else None
        profiles.append(
            MediaProfile(
                token=token,
                name=next((xmlsafe.text(c) for c in xmlsafe.children(el, "Name")), None),
                encoding=encoding.upper() if encoding else None,
                width=_dimension(xmlsafe.text(resolution, "Width") if resolution is not None else None),
                height=_dimension(xmlsafe.text(resolution, "Height") if resolution is not None else None),
            )
        )
    return profiles


def _dimension(value: str | None) -> int | None:
    try:
        return int(float(value)) if value else None
    except ValueError:
        return None


def parse_uri(payload: Element) -> str | None:
    """GetStreamUri/GetSnapshotUriResponse → the URI."""
    # Camera quirk: Uri directly in the response, without the MediaUri wrapper.
    return xmlsafe.text(payload, "MediaUri", "Uri") or xmlsafe.text(payload, "Uri")
