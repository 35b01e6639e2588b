"""Asking one ONVIF camera who it is, what time it has, and where its streams are.

Owns :func:`query_device`, the sequence of ONVIF calls for one device:

1. GetSystemDateAndTime, unsigned (the spec leaves it open), sampled twice
   to measure the clock offset to a quarter second; the offset then dates
   every signed request (cameras refuse tokens off their own clock).
2. GetDeviceInformation (signed when credentials are given).
3. GetServices, or GetCapabilities for devices that do not know it, for the
   media service's address.
4. Media GetProfiles, GetStreamUri (RTP-Unicast over RTSP) for the first
   profiles (main stream, sub stream, ...), GetSnapshotUri of the first.

Failures raise a :class:`~labwitness.errors.DeviceError` subclass whose
``partial`` holds what had been learned.  :func:`read_clock` is step 1 alone
(the expiry sweep asks cameras for the time before deleting anything).
"""

from __future__ import annotations

import math
from datetime import timedelta

from camera_discovery import onvif_parse as parse
from camera_discovery import xaddr_policy
from camera_discovery.models import DeviceInfo, MediaProfile
from camera_discovery.soap import Exchange, SoapSession
from labwitness.clock import Clock, SystemClock
from labwitness.errors import DeviceAuthError, DeviceError, DeviceProtocolError, SoapFaultError

#: profiles whose stream URI is asked for: main and sub stream, and a couple
#: more; cameras with a dozen profiles (one per encoder combination) would
#: otherwise cost a dozen round trips each
MAX_PROFILES = 4
_STREAM_SETUP = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}


def query_device(
    xaddr: str,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 5.0,
    *,
    clock: Clock | None = None,
    clock_samples: int = 2,
    max_profiles: int = MAX_PROFILES,
    allowed_hosts: frozenset[str] | None = None,
) -> DeviceInfo:
    """Query the device service at ``xaddr``; see the module docstring.

    ``timeout`` bounds each request (connect, each read; a whole answer gets
    twice that). ``clock_samples`` = 1 skips the clock refinement (offset
    then known to ±0.5 s instead of ±0.25 s, and up to a second quicker).
    ``allowed_hosts`` (see :mod:`.xaddr_policy`) are the only hosts contacted;
    by default the host of ``xaddr`` itself, the address the caller chose.
    """
    info = DeviceInfo(xaddr=xaddr)
    if allowed_hosts is None:
        allowed_hosts = xaddr_policy.allowed_hosts(xaddr_policy.url_host(xaddr) or "")
    with SoapSession(username, password, timeout, clock=clock or SystemClock(), allowed_hosts=allowed_hosts) as session:
        try:
            DeviceQuery(session, xaddr, info).run(clock_samples, max_profiles)
        except DeviceError as e:
            e.partial = info
            raise
    return info


def read_clock(
    xaddr: str,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 3.0,
    *,
    clock: Clock | None = None,
    samples: int = 1,
) -> DeviceInfo:
    """Only the camera's clock (step 1 of :func:`query_device`): ``clock_offset_s`` is the
    camera's clock minus ``clock``'s, ``clock_uncertainty_s`` its half-width.  One sample
    (the default) knows it to ±(0.5 s + half the round trip) and never sleeps.  Contacts
    the host of ``xaddr`` only; raises :class:`DeviceError` as :func:`query_device` does."""
    info = DeviceInfo(xaddr=xaddr)
    allowed = xaddr_policy.allowed_hosts(xaddr_policy.url_host(xaddr) or "")
    with SoapSession(username, password, timeout, clock=clock or SystemClock(), allowed_hosts=allowed) as session:
        try:
            DeviceQuery(session, xaddr, info).measure_clock(samples)
        except DeviceError as e:
            e.partial = info
            raise
    return info


class DeviceQuery:
    """The calls to one device over one SOAP session: discovery's queries, the clock, the time settings."""

    def __init__(self, session: SoapSession, xaddr: str, info: DeviceInfo) -> None:
        self.session = session
        self.xaddr = xaddr
        self.info = info
        self.time_needs_auth = False

    def run(self, clock_samples: int, max_profiles: int) -> None:
        self.measure_clock(clock_samples)
        details = parse.parse_device_information(self.call("device", "GetDeviceInformation").payload)
        for key, value in details.items():
            setattr(self.info, key, value)
        self.info.services = self.services()
        # Camera quirk: no media service in GetServices/GetCapabilities, yet
        # the media calls work on the device service's own address.
        media = self.info.services.get(parse.NS_MEDIA, self.xaddr)
        if not self.session.may_contact(media):
            # The device names its media service on another host: a camera behind NAT
            # reporting its inside address, or an answer aiming us elsewhere. Not
            # contacted; the device service's own address serves media on most cameras.
            self.info.skipped_xaddrs.append(media)
            media = self.xaddr
        profiles = parse.parse_profiles(self.call("media", "GetProfiles", at=media).payload)
        self.info.profiles = [self.stream_uri(media, p) for p in profiles[:max_profiles]] + profiles[max_profiles:]
        if profiles:
            try:
                answer = self.call("media", "GetSnapshotUri", at=media, ProfileToken=profiles[0].token)
                self.info.snapshot_uri = parse.parse_uri(answer.payload)
            except DeviceProtocolError:
                pass  # many cameras have no snapshots (fault, or HTTP 500): no failure

    # -- calls -------------------------------------------------------------

    def call(self, service: str, operation: str, *, at: str | None = None, **params: object) -> Exchange:
        """A signed call (when credentials exist); a refusal says what to do."""
        try:
            return self.session.call(at or self.xaddr, service, operation, auth=True, **params)
        except DeviceAuthError as e:
            if not self.session.has_credentials:
                raise DeviceAuthError(f"设备需要用户名和密码 / the device requires credentials for {operation}; give a username and password ({e})") from None
            raise DeviceAuthError(
                f"用户名或密码被拒绝 / credentials for user {self.session.username!r} refused on {operation} "
                f"(wrong password? signed with the camera clock, offset {self.session.clock_offset_s:+.1f} s) ({e})"
            ) from None

    def time_call(self) -> Exchange:
        """GetSystemDateAndTime: unsigned first, signed if the camera insists."""
        if self.time_needs_auth:
            return self.call("device", "GetSystemDateAndTime")
        try:
            return self.session.call(self.xaddr, "device", "GetSystemDateAndTime", auth=False)
        except DeviceAuthError:
            if not self.session.has_credentials:
                raise DeviceAuthError(
                    "设备连读时间都需要认证 / the device demands credentials even for "
                    "GetSystemDateAndTime; give a username and password"
                ) from None
        # Camera quirk: AXIS and some other firmwares demand a token on every
        # call, even those ONVIF leaves open. The camera's clock is then
        # unknown; its HTTP Date header (on the refusal) is the best guess.
        if self.session.last_http_date is not None:
            camera, host = self.session.last_http_date
            self.session.clock_offset_s = (camera - host).total_seconds()
        try:
            exchange = self.session.call(self.xaddr, "device", "GetSystemDateAndTime", auth=True)
            self.time_needs_auth = True
            return exchange
        except DeviceAuthError as e:
            raise DeviceAuthError(
                f"读时间也需认证且被拒绝 / GetSystemDateAndTime demands credentials and refused them for "
                f"user {self.session.username!r}: wrong password, or the camera clock is off by more than "
                f"it tolerates (HTTP Date offset {self.session.clock_offset_s:+.0f} s) ({e})"
            ) from None

    def services(self) -> dict[str, str]:
        try:
            services = parse.parse_services(self.call("device", "GetServices", IncludeCapability=False).payload)
            if services:
                return services
        except DeviceProtocolError:
            pass  # Camera quirk: pre-2.0 devices know only GetCapabilities
        return parse.parse_capabilities(self.call("device", "GetCapabilities", Category="All").payload)

    def stream_uri(self, media: str, profile: MediaProfile) -> MediaProfile:
        try:
            answer = self.call("media", "GetStreamUri", at=media, StreamSetup=_STREAM_SETUP, ProfileToken=profile.token)
        except SoapFaultError:
            return profile  # e.g. a JPEG-only profile that cannot stream RTSP
        uri = parse.parse_uri(answer.payload)
        return MediaProfile(profile.token, profile.name, profile.encoding, profile.width, profile.height, uri)

    # -- clock -------------------------------------------------------------

    def measure_clock(self, samples: int) -> None:
        """Offset of the camera clock, narrowed by timing later samples.

        A camera reports whole seconds, so one sample puts its clock in a
        one-second interval. The next sample is sent so that, if the offset
        were the interval's middle, the camera's second would tick exactly
        when it reads its clock: the reading then says which half holds the
        offset. Each interval is widened by half the round trip on both
        sides, since the camera read its clock somewhere within it.
        """
        low, high = -math.inf, math.inf
        last_rtt = 0.0
        for i in range(max(1, samples)):
            if i:
                middle = (low + high) / 2
                # host time (epoch s) at which camera time would be a whole second
                target = math.ceil(self._now() + last_rtt / 2 + 0.05 + middle) - middle
                self.session.clock.sleep(max(0.0, target - last_rtt / 2 - self._now()))
            exchange = self.time_call()
            reading = parse.parse_system_date_and_time(exchange.payload, exchange.sent)
            last_rtt = exchange.rtt_s
            midpoint = (exchange.sent + timedelta(seconds=last_rtt / 2)).timestamp()
            camera = reading.utc.timestamp()
            lo, hi = camera - midpoint - last_rtt / 2, camera + reading.resolution_s - midpoint + last_rtt / 2
            low, high = (max(low, lo), min(high, hi)) if max(low, lo) <= min(high, hi) else (lo, hi)
            self.info.clock_offset_s = (low + high) / 2
            self.info.clock_uncertainty_s = (high - low) / 2
            self.info.clock_source = reading.source
            self.session.clock_offset_s = self.info.clock_offset_s
            if reading.resolution_s != 1.0:
                break  # nothing to gain: already sub-second, or only minutes

    def _now(self) -> float:
        return self.session.clock.now().timestamp()
