"""The device and media services of a simulated camera: SOAP over HTTP, digest auth, quirks.

Owns :class:`SoapService` (one SOAP request in, one answer out) and the HTTP
server around it (one handler for every path, as many cameras do).  It answers
GetSystemDateAndTime, GetDeviceInformation, GetCapabilities, GetServices,
GetProfiles, GetStreamUri and GetSnapshotUri, and changes its clock on
GetNTP/SetNTP/SetSystemDateAndTime (:meth:`ServedCamera.set_time`); checks WS-UsernameToken
PasswordDigest on every call the spec protects, including ``Created`` against
the camera's *own* clock within ``auth_tolerance_s``, and refuses replayed
nonces; and misbehaves on request (:data:`~.onvif_messages.QUIRKS`).  The XML
text itself is :mod:`.onvif_messages`'; the camera (:mod:`.onvif`) owns the
thread that accepts connections.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import ipaddress
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from xml.etree.ElementTree import Element

from camera_discovery import xmlsafe
from labwitness.errors import DeviceProtocolError
from simulator import onvif_messages as msg

log = logging.getLogger(__name__)

#: operations ONVIF lets anyone call (access class PRE_AUTH)
PRE_AUTH = frozenset({"GetSystemDateAndTime", "GetCapabilities", "GetServices"})
#: how long a "hang" quirk keeps a request unanswered (ends sooner on stop())
HANG_S = 120.0
MAX_REQUEST = 256 * 1024
_SOAP = "application/soap+xml; charset=utf-8"

#: ``(status, content type, body)``; a body that is an iterator is sent chunked, without Content-Length
Answer = tuple[int, str, bytes | Iterator[bytes]]


@dataclass(frozen=True)
class Call:
    """One SOAP request as the simulator saw it (tests read :attr:`OnvifCameraSimulator.calls`)."""

    operation: str
    #: the request carried a valid token
    authenticated: bool
    #: why a token present was refused (None when valid or absent)
    auth_problem: str | None


class ServedCamera(Protocol):
    """What the services read from the camera, at each request (a test may override an address)."""

    username: str | None
    password: str | None
    quirks: frozenset[str]
    host: str
    auth_tolerance_s: float
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware: str
    profiles: list[msg.Profile]

    @property
    def http_port(self) -> int: ...

    @property
    def xaddr(self) -> str: ...

    @property
    def media_xaddr(self) -> str: ...

    def camera_now(self) -> datetime: ...

    date_time_type: str
    ntp_from_dhcp: bool
    ntp_servers: list[tuple[str, str]]

    def set_time(self, date_time_type: str, utc: datetime | None) -> None: ...


class SoapService:
    """The camera's SOAP endpoint; keeps the :attr:`calls` it saw and the nonces it accepted."""

    def __init__(self, camera: ServedCamera) -> None:
        self.camera = camera
        self.calls: list[Call] = []
        self._nonces: deque[str] = deque(maxlen=1024)
        self._lock = threading.Lock()

    def answer(self, body: bytes) -> Answer | None:
        """The answer to one request; None means "never answer"."""
        quirks = self.camera.quirks
        try:
            root = xmlsafe.parse(body, "request", max_bytes=MAX_REQUEST)
        except DeviceProtocolError as e:
            return _fault(400, "Sender", "WellFormed", str(e))
        request = xmlsafe.first(root, "Body")
        operation_el = next((c for c in request if isinstance(c.tag, str)), None) if request is not None else None
        if operation_el is None:
            return _fault(400, "Sender", "WellFormed", "no operation in Body")
        operation = operation_el.tag.rsplit("}", 1)[-1]
        authenticated, problem = self._check_auth(root)
        with self._lock:
            self.calls.append(Call(operation, authenticated, problem))
        if "hang" in quirks:
            return None
        if "html" in quirks:
            return 200, "text/html; charset=utf-8", msg.HTML_PAGE
        if "oversized" in quirks:
            return 200, _SOAP, msg.endless()
        protected = operation not in PRE_AUTH or "auth_preauth" in quirks
        if self.camera.username is not None and protected and not authenticated:
            return _fault(400, "Sender", "NotAuthorized", "Sender not Authorized")
        return self._dispatch(operation, operation_el)

    def _dispatch(self, operation: str, request: Element) -> Answer:
        cam = self.camera
        q = cam.quirks
        if operation == "GetSystemDateAndTime":
            return self._ok(msg.system_date_and_time(cam.camera_now(), q, cam.date_time_type))
        if operation in ("GetNTP", "SetNTP", "SetSystemDateAndTime"):
            return self._time(operation, request)
        if operation == "GetDeviceInformation":
            return self._ok(msg.device_information(cam.manufacturer, cam.model, cam.firmware, cam.serial, cam.hardware))
        if operation == "GetServices" and "no_services" not in q:
            return self._ok(msg.services(cam.xaddr, cam.media_xaddr))
        if operation == "GetCapabilities":
            return self._ok(msg.capabilities(cam.xaddr, cam.media_xaddr, q))
        if operation == "GetProfiles":
            return self._ok(msg.profiles(cam.profiles, q))
        if operation in ("GetStreamUri", "GetSnapshotUri"):
            token = xmlsafe.text(request, "ProfileToken")
            profile = next((p for p in cam.profiles if p.token == token), None)
            if profile is None:
                return _fault(400, "Sender", "NoProfile", f"no profile {token!r}")
            uri = profile.uri if operation == "GetStreamUri" else f"http://{cam.host}:{cam.http_port}/onvif/snapshot/{profile.token}.jpg"
            return self._ok(msg.media_uri(operation, uri, q))
        return _fault(500, "Receiver", "ActionNotSupported", f"{operation} is not supported")

    def _time(self, operation: str, request: Element) -> Answer:
        """The clock settings, as a camera keeps them (ONVIF Core 8.3.6-8.3.12)."""
        cam = self.camera
        if operation == "SetSystemDateAndTime":
            kind = (xmlsafe.text(request, "DateTimeType") or "").strip()
            if kind not in ("NTP", "Manual"):
                return _fault(400, "Sender", "InvalidArgVal", f"DateTimeType {kind!r}")
            utc = None
            if kind == "Manual":
                try:
                    utc = datetime(*(int(xmlsafe.text(request, "UTCDateTime", part, name) or "")
                                     for part, name in (("Date", "Year"), ("Date", "Month"), ("Date", "Day"),
                                                        ("Time", "Hour"), ("Time", "Minute"), ("Time", "Second"))),
                                   tzinfo=timezone.utc)
                except ValueError:
                    return _fault(400, "Sender", "InvalidDateTime", "UTCDateTime missing or not a valid date and time")
            with self._lock:
                cam.set_time(kind, utc)
            return self._ok("<tds:SetSystemDateAndTimeResponse/>")
        if "no_ntp" in cam.quirks:
            return _fault(500, "Receiver", "ActionNotSupported", f"{operation} is not supported")
        if operation == "GetNTP":
            return self._ok(msg.ntp(cam.ntp_from_dhcp, list(cam.ntp_servers)))
        from_dhcp = (xmlsafe.text(request, "FromDHCP") or "").strip().lower() in ("true", "1")
        servers = []
        for el in xmlsafe.children(request, "NTPManual"):
            kind = (xmlsafe.text(el, "Type") or "").strip()
            name = {"IPv4": "IPv4Address", "IPv6": "IPv6Address", "DNS": "DNSname"}.get(kind)
            address = (xmlsafe.text(el, name) or "").strip() if name else ""
            if kind in ("IPv4", "IPv6"):
                try:
                    if ipaddress.ip_address(address).version != int(kind[-1]):
                        raise ValueError(address)
                except ValueError:
                    return _fault(400, "Sender", f"Invalid{kind}Address", f"{address!r} is not an {kind} address")
            elif kind != "DNS" or not address:
                return _fault(400, "Sender", "InvalidArgVal", f"NTPManual type {kind!r} without an address")
            servers.append((kind, address))
        with self._lock:
            cam.ntp_from_dhcp, cam.ntp_servers = from_dhcp, servers
        return self._ok("<tds:SetNTPResponse/>")

    def _ok(self, payload: str) -> Answer:
        return 200, _SOAP, msg.envelope(payload, self.camera.quirks)

    def _check_auth(self, root: Element) -> tuple[bool, str | None]:
        """Validate the UsernameToken: user, PasswordDigest, Created vs the camera's clock, fresh nonce."""
        cam = self.camera
        token = xmlsafe.first(root, "Header", "Security", "UsernameToken")
        if token is None or cam.username is None:
            return False, None
        password_el = xmlsafe.first(token, "Password")
        nonce, created = xmlsafe.text(token, "Nonce"), xmlsafe.text(token, "Created")
        if xmlsafe.text(token, "Username") != cam.username:
            return False, "unknown user"
        if password_el is None or not (xmlsafe.attr(password_el, "Type") or "").endswith("#PasswordDigest"):
            return False, "not a PasswordDigest"
        if not nonce or not created:
            return False, "Nonce or Created missing"
        try:
            raw_nonce = base64.b64decode(nonce, validate=True)
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return False, "unreadable Nonce or Created"
        expected = base64.b64encode(
            hashlib.sha1(raw_nonce + created.encode() + (cam.password or "").encode()).digest()
        ).decode()
        if not hmac.compare_digest(expected, (password_el.text or "").strip()):
            return False, "wrong digest (password)"
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        skew = (when - cam.camera_now()).total_seconds()
        if abs(skew) > cam.auth_tolerance_s:
            return False, f"Created is {skew:+.1f} s off the camera clock"
        with self._lock:
            if nonce in self._nonces:
                return False, "replayed nonce"
            self._nonces.append(nonce)
        return True, None


def _fault(status: int, code: str, subcode: str, reason: str) -> Answer:
    # faults are sent clean: the quirks are about answers, and a test of
    # a quirk should fail on the quirk, not on an auth fault garbled by it
    return status, _SOAP, msg.envelope(msg.fault(code, subcode, reason), frozenset())


class HttpServer(ThreadingHTTPServer):
    """The services' HTTP server; the camera calls :meth:`handle_request` when a connection waits."""

    daemon_threads = True
    block_on_close = False  # stop() must not wait for a "hang" request
    request_queue_size = 128  # fifty clients may connect at once in the benchmark
    timeout = 0  # handle_request() is only called when a connection is waiting

    def __init__(self, address: tuple[str, int], service: SoapService, stopping: threading.Event) -> None:
        self.service = service
        #: set when the camera stops: hanging and endless answers end
        self.stopping = stopping
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients make several calls in a row
    server_version = "SimCam-ONVIF/1.0"
    timeout = 10  # idle keep-alive connections are closed after this
    server: HttpServer

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        stopping = self.server.stopping
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            self.send_error(413)
            return
        answer = self.server.service.answer(self.rfile.read(length))
        if answer is None:
            stopping.wait(HANG_S)
            self.close_connection = True
            return
        status, content_type, body = answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if isinstance(body, bytes):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in body:
                if stopping.is_set():
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client gave up reading, as it should

    def send_response(self, code: int, message: str | None = None) -> None:
        # the Date header tells the *camera's* clock, as a real camera's does
        camera = self.server.service.camera
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        if "no_date_header" not in camera.quirks:
            self.send_header("Date", email.utils.format_datetime(camera.camera_now(), usegmt=True))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)
