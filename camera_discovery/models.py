"""Results of a camera scan: plain dataclasses, nothing persisted here.

Owns the shapes other packages consume: :class:`ProbeMatch` (one WS-Discovery
answer), :class:`DeviceInfo` (what the ONVIF services told us),
:class:`MediaProfile`, :class:`Scopes`, and :class:`DiscoveredDevice` (the
two merged, with ``error`` instead of an exception when a device failed) whose
:meth:`DiscoveredDevice.to_json` is the ``labwitness discover --json`` contract
(URLs in it redacted: a stream or snapshot URI may carry the camera's password).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from labwitness.url_secrets import redact_url

_SCOPE_PREFIX = "onvif://www.onvif.org/"
#: service addresses kept per device: a camera lists one to three (IPv4, IPv6,
#: a second NIC); an answer listing thousands would cost a timeout each
MAX_XADDRS = 8
#: types and scopes kept per device, however many answers it sends
MAX_TOKENS = 64


@dataclass(frozen=True)
class Scopes:
    """The ONVIF scopes people care about; ``None`` when the device gave none."""

    name: str | None = None
    hardware: str | None = None
    location: str | None = None

    @classmethod
    def from_uris(cls, uris: tuple[str, ...] | list[str]) -> Scopes:
        """Pick name/hardware/location out of ``onvif://www.onvif.org/<kind>/<value>`` URIs.

        Values are percent-decoded (ONVIF says scope values are URI segments;
        ``Lab%20A`` is "Lab A"). A location may be hierarchical
        (``location/country/china``) and is kept as the path after ``location/``.
        Several of one kind (some cameras list two names) are joined with ", ".
        """
        found: dict[str, list[str]] = {"name": [], "hardware": [], "location": []}
        for uri in uris:
            if not uri.lower().startswith(_SCOPE_PREFIX):
                continue
            kind, _, value = uri[len(_SCOPE_PREFIX):].partition("/")
            kind = kind.lower()
            if kind in found and value:
                decoded = unquote(value).strip()
                if decoded and decoded not in found[kind]:
                    found[kind].append(decoded)
        return cls(**{k: ", ".join(v) if v else None for k, v in found.items()})

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "hardware": self.hardware, "location": self.location}


@dataclass(frozen=True)
class ProbeMatch:
    """One device as WS-Discovery described it (merged over repeated answers)."""

    endpoint: str
    xaddrs: tuple[str, ...]
    types: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    #: ``host:port`` the answer came from (not necessarily an XAddr host)
    source: str = ""

    def merged(self, other: ProbeMatch) -> ProbeMatch:
        """Union of two answers from the same endpoint, first-seen order kept."""
        return ProbeMatch(
            endpoint=self.endpoint,
            xaddrs=_union(self.xaddrs, other.xaddrs)[:MAX_XADDRS],
            types=_union(self.types, other.types)[:MAX_TOKENS],
            scopes=_union(self.scopes, other.scopes)[:MAX_TOKENS],
            source=self.source or other.source,
        )


@dataclass(frozen=True)
class MediaProfile:
    """One media profile; by camera convention the first is the main stream."""

    token: str
    name: str | None = None
    encoding: str | None = None
    width: int | None = None
    height: int | None = None
    stream_uri: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "stream_uri": redact_url(self.stream_uri) if self.stream_uri else None,  # some cameras put ?pwd= in it
            "width": self.width,
            "height": self.height,
            "encoding": self.encoding,
        }


#: encodings a sub-stream sampler can take (ONVIF names them H264 / H265; some cameras say HEVC)
_SAMPLED_ENCODINGS = {"H264", "H265", "HEVC"}
#: narrower pictures are below the content detectors' analysis size (320 px): a coarser judge
SUB_MIN_WIDTH = 320


def sub_profile(profiles: list[MediaProfile], main_above_px: int = 0) -> MediaProfile | None:
    """The profile to take content-health pictures from: the smallest by pixel count among those
    after the first (the main stream, which is recorded), with a stream URI, an H.264/H.265
    encoding (or none said), at least ``SUB_MIN_WIDTH`` wide and fewer pixels than the main
    (a larger one is no cheaper); None when the main has no more than ``main_above_px``
    pixels (below that, a sub stream costs more than it saves: docs/decisions.md).  Pure."""
    if len(profiles) < 2:
        return None
    main = profiles[0]
    main_px = (main.width or 0) * (main.height or 0)
    if main_px <= main_above_px:
        return None
    best: MediaProfile | None = None
    for p in profiles[1:]:
        if not p.stream_uri or p.stream_uri == main.stream_uri or not p.width or not p.height \
                or p.width < SUB_MIN_WIDTH:
            continue
        if p.encoding and p.encoding.upper() not in _SAMPLED_ENCODINGS:
            continue  # MJPEG, JPEG: not a stream the sampler reads
        px = p.width * p.height
        if main_px and px >= main_px:
            continue
        if best is None or px < best.width * best.height:  # type: ignore[operator]
            best = p
    return best


@dataclass
class DeviceInfo:
    """What the device and media services of one camera answered."""

    xaddr: str
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    hardware_id: str | None = None
    #: camera clock minus host clock, seconds (positive: camera is ahead)
    clock_offset_s: float | None = None
    #: half-width of the interval the offset is known to lie in
    clock_uncertainty_s: float | None = None
    #: how the camera's time was read ("UTCDateTime", "LocalDateTime+TZ", ...)
    clock_source: str | None = None
    #: service namespace → XAddr, from GetServices or GetCapabilities
    services: dict[str, str] = field(default_factory=dict)
    profiles: list[MediaProfile] = field(default_factory=list)
    snapshot_uri: str | None = None
    #: service addresses the device named on another host, not contacted (see xaddr_policy)
    skipped_xaddrs: list[str] = field(default_factory=list)


@dataclass
class DiscoveredDevice:
    """One camera of a scan: its WS-Discovery answer plus its ONVIF facts.

    ``error`` is ``None`` when every required query worked, else one clear
    message; the fields learned before the failure stay filled in.
    ``endpoint`` is ``None`` only for a responder whose WS-Discovery answer
    itself was unusable (then ``source`` says who it was).
    """

    endpoint: str | None
    xaddrs: list[str] = field(default_factory=list)
    scopes: Scopes = field(default_factory=Scopes)
    types: list[str] = field(default_factory=list)
    source: str = ""
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    clock_offset_s: float | None = None
    profiles: list[MediaProfile] = field(default_factory=list)
    snapshot_uri: str | None = None
    error: str | None = None
    #: service addresses not contacted: on another host than the one that answered
    skipped_xaddrs: list[str] = field(default_factory=list)
    #: for a responder whose answers were unusable: how many it sent
    bad_replies: int = 0

    @classmethod
    def from_match(cls, match: ProbeMatch, info: DeviceInfo | None = None, error: str | None = None,
                   skipped_xaddrs: list[str] | None = None) -> DiscoveredDevice:
        device = cls(
            endpoint=match.endpoint,
            xaddrs=list(match.xaddrs),
            scopes=Scopes.from_uris(match.scopes),
            types=list(match.types),
            source=match.source,
            error=error,
            skipped_xaddrs=list(skipped_xaddrs or ()),
        )
        if info is not None:
            device.manufacturer = info.manufacturer
            device.model = info.model
            device.serial = info.serial
            device.firmware = info.firmware
            device.clock_offset_s = info.clock_offset_s
            device.profiles = list(info.profiles)
            device.snapshot_uri = info.snapshot_uri
            device.skipped_xaddrs += [x for x in info.skipped_xaddrs if x not in device.skipped_xaddrs]
        return device

    def to_json(self) -> dict[str, Any]:
        """The ``labwitness discover --json`` object of this device."""
        return {
            "endpoint": self.endpoint,
            "xaddrs": list(self.xaddrs),
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "clock_offset_s": None if self.clock_offset_s is None else round(self.clock_offset_s, 3),
            "profiles": [p.to_json() for p in self.profiles],
            "scopes": self.scopes.to_json(),
            "firmware": self.firmware,
            "snapshot_uri": redact_url(self.snapshot_uri) if self.snapshot_uri else None,
            "error": self.error,
            "skipped_xaddrs": list(self.skipped_xaddrs),
            "bad_replies": self.bad_replies,
        }


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))
