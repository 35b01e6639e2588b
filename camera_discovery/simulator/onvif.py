"""A simulated ONVIF camera: WS-Discovery, device and media services, digest auth.

Owns :class:`OnvifCameraSimulator`, used by the tests, the demo and
``bench.discover``. Each simulator, in threads of the calling process:

* answers WS-Discovery Probes for ``dn:NetworkVideoTransmitter`` /
  ``tds:Device`` by multicast (group 239.255.255.250 joined on its host
  address, so loopback works) and by unicast at :attr:`discovery_address`;
* serves the ONVIF device and media services over HTTP (one handler for
  every path, as many cameras do): GetSystemDateAndTime, GetDeviceInformation,
  GetCapabilities, GetServices, GetProfiles, GetStreamUri, GetSnapshotUri;
* checks WS-UsernameToken PasswordDigest on every call the spec protects,
  including ``Created`` against its *own* clock (host clock +
  ``clock_offset_s``) within ``auth_tolerance_s``, and refuses replayed nonces;
* points its stream URIs at the RTSP URLs it was given (the project's RTSP
  test source, :mod:`camera_discovery.simulator.rtsp`);
* misbehaves on request: see :data:`~.onvif_messages.QUIRKS`.

Several can run at once: each has its own endpoint reference and HTTP port.
They may share the WS-Discovery port (multicast is delivered to every
member); only the first to bind gets that port for unicast as well, the
others take a free one — :attr:`discovery_address` says which.

    with OnvifCameraSimulator(name="Lab A", rtsp_url=rtsp.url("/live"), discovery_port=port) as cam:
        discover(hosts=[cam.discovery_address], port=port, interfaces=["127.0.0.1"])
"""

from __future__ import annotations

import base64
import email.utils
import errno
import hashlib
import hmac
import logging
import select
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import quote
from xml.etree.ElementTree import Element

from camera_discovery import ws_discovery as wsd
from camera_discovery import xmlsafe
from camera_discovery.simulator import onvif_messages as msg
from labwitness.clock import Clock, SystemClock
from labwitness.errors import DeviceProtocolError

log = logging.getLogger(__name__)

#: operations ONVIF lets anyone call (access class PRE_AUTH)
PRE_AUTH = frozenset({"GetSystemDateAndTime", "GetCapabilities", "GetServices"})
#: how long a "hang" quirk keeps a request unanswered (ends sooner on stop())
HANG_S = 120.0
_MAX_REQUEST = 256 * 1024


@dataclass(frozen=True)
class Call:
    """One SOAP request as the simulator saw it (tests read :attr:`OnvifCameraSimulator.calls`)."""

    operation: str
    #: the request carried a valid token
    authenticated: bool
    #: why a token present was refused (None when valid or absent)
    auth_problem: str | None


class OnvifCameraSimulator:
    """One simulated camera; a context manager (``start()``/``stop()``)."""

    def __init__(
        self,
        name: str = "Simulated camera",
        rtsp_url: str = "rtsp://127.0.0.1:8554/live",
        sub_rtsp_url: str | None = None,
        username: str | None = "admin",
        password: str | None = "admin",
        clock_offset_s: float = 0.0,
        http_port: int = 0,
        discovery_port: int = wsd.DEFAULT_PORT,
        multicast: bool = True,
        quirks: set[str] | frozenset[str] = frozenset(),
        *,
        host: str = "127.0.0.1",
        endpoint: str | None = None,
        manufacturer: str = "labwitness",
        model: str = "SimCam ONVIF",
        firmware: str = "1.0.0",
        serial: str | None = None,
        hardware: str = "SimCam-1",
        location: str = "lab",
        auth_tolerance_s: float = 5.0,
        main_resolution: tuple[int, int] = (1920, 1080),
        sub_resolution: tuple[int, int] = (640, 360),
        encoding: str = "H264",
        clock: Clock | None = None,
    ) -> None:
        unknown = set(quirks) - msg.QUIRKS
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(msg.QUIRKS)}")
        self.name = name
        self.username = username
        self.password = password
        self.clock_offset_s = clock_offset_s
        self.quirks = frozenset(quirks)
        self.host = host
        self.multicast = multicast
        self.auth_tolerance_s = auth_tolerance_s
        self.endpoint = endpoint or f"urn:uuid:{uuid.uuid4()}"
        self.manufacturer, self.model, self.firmware, self.hardware = manufacturer, model, firmware, hardware
        self.serial = serial or self.endpoint.rsplit(":", 1)[-1][:12].upper()
        self.location = location
        self.clock = clock or SystemClock()
        self.calls: list[Call] = []
        self._profiles = [msg.Profile("Profile_1", "mainStream", *main_resolution, encoding, rtsp_url)]
        if sub_rtsp_url:
            self._profiles.append(msg.Profile("Profile_2", "subStream", *sub_resolution, encoding, sub_rtsp_url))
        self._http_port = http_port
        self._discovery_port = discovery_port
        self._unicast_port = 0
        #: True once the multicast group is joined (see start())
        self.multicast_active = False
        self._nonces: deque[str] = deque(maxlen=1024)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._udp: list[socket.socket] = []
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None

    # -- addresses -----------------------------------------------------------

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def xaddr(self) -> str:
        """The device service address, as announced in ProbeMatches."""
        return f"http://{self.host}:{self._http_port}/onvif/device_service"

    @property
    def media_xaddr(self) -> str:
        return f"http://{self.host}:{self._http_port}/onvif/media_service"

    @property
    def discovery_port(self) -> int:
        """The WS-Discovery port (multicast group port)."""
        return self._discovery_port

    @property
    def discovery_address(self) -> str:
        """``host:port`` where this camera answers directed (unicast) probes."""
        return f"{self.host}:{self._unicast_port}"

    def scopes(self) -> list[str]:
        name = self.name if "raw_scopes" in self.quirks else quote(self.name)
        return [
            "onvif://www.onvif.org/type/video_encoder",
            "onvif://www.onvif.org/type/Network_Video_Transmitter",
            "onvif://www.onvif.org/Profile/Streaming",
            f"onvif://www.onvif.org/name/{name}",
            f"onvif://www.onvif.org/hardware/{quote(self.hardware)}",
            f"onvif://www.onvif.org/location/{quote(self.location)}",
        ]

    def camera_now(self) -> datetime:
        """The simulated camera's own (offset) clock."""
        return self.clock.now() + timedelta(seconds=self.clock_offset_s)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> OnvifCameraSimulator:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        try:
            self._server = _HttpServer((self.host, self._http_port), self)
            self._http_port = self._server.server_address[1]
            self._open_discovery_sockets()
            self._wake = socket.socketpair()
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._serve, name=f"onvif-sim-{self._http_port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering; hanging requests are released. Idempotent."""
        self._stopping.set()
        if self._wake is not None:
            try:
                self._wake[1].send(b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def __enter__(self) -> OnvifCameraSimulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
        for s in self._udp:
            s.close()
        self._udp = []
        if self._wake is not None:
            for s in self._wake:
                s.close()
            self._wake = None

    def _open_discovery_sockets(self) -> None:
        unicast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.append(unicast)
        try:
            # No SO_REUSEADDR: with it, Linux would hand each unicast probe
            # to only one of several simulators sharing the port.
            unicast.bind((self.host, self._discovery_port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            unicast.bind((self.host, 0))
        self._unicast_port = unicast.getsockname()[1]
        if self._discovery_port == 0:
            self._discovery_port = self._unicast_port
        self.multicast_active = False
        if self.multicast:
            group = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                group.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                # Bound to the group address, not 0.0.0.0: it hears only the
                # group's datagrams, and binds nothing on other interfaces.
                group.bind((wsd.MULTICAST_GROUP, self._discovery_port))
                membership = struct.pack("4s4s", socket.inet_aton(wsd.MULTICAST_GROUP), socket.inet_aton(self.host))
                group.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            except OSError as e:
                # e.g. a host without any multicast route: the camera still
                # answers directed probes, which the demo can fall back to
                group.close()
                log.warning("simulated camera %r: no multicast on %s (%s); unicast probes only", self.name, self.host, e)
                return
            self._udp.append(group)
            self.multicast_active = True

    def _serve(self) -> None:
        """One thread per simulator: HTTP accepts and WS-Discovery, no polling."""
        assert self._server is not None and self._wake is not None
        listening = [self._server.socket, *self._udp, self._wake[0]]
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select(listening, [], [])
            except (OSError, ValueError):
                return  # sockets closed under us by stop()
            for sock in readable:
                if sock is self._server.socket:
                    self._server.handle_request()  # accepts; ThreadingMixIn serves it in a thread
                elif sock in self._udp:
                    self._answer_probe(sock)

    # -- WS-Discovery --------------------------------------------------------

    def _answer_probe(self, sock: socket.socket) -> None:
        try:
            data, sender = sock.recvfrom(wsd.MAX_DATAGRAM)
        except OSError:
            return
        try:
            message_id, types = wsd.parse_probe(data, f"{sender[0]}:{sender[1]}")
        except DeviceProtocolError:
            return  # not a Probe (or unsafe XML): a camera ignores it
        wanted = {xmlsafe.local(t) for t in types}
        if not wanted <= {"networkvideotransmitter", "device"}:
            return
        answer = wsd.build_probe_matches(
            wsd.new_message_id(), message_id or "", self.endpoint, [self.xaddr], self.scopes()
        )
        if "malformed_probe_match" in self.quirks:
            answer = answer[: len(answer) // 2]
        try:
            # answers go out from the unicast socket: its address is ours
            self._udp[0].sendto(answer, sender)
        except OSError as e:
            log.debug("ProbeMatches to %s failed: %s", sender, e)

    # -- SOAP ----------------------------------------------------------------

    def handle_soap(self, body: bytes) -> tuple[int, str, bytes | Iterator[bytes]] | None:
        """``(status, content type, body)`` for one request; None means "never answer".

        A body that is an iterator is sent chunked, without Content-Length.
        """
        try:
            root = xmlsafe.parse(body, "request", max_bytes=_MAX_REQUEST)
        except DeviceProtocolError as e:
            return self._fault(400, "Sender", "WellFormed", str(e))
        request = xmlsafe.first(root, "Body")
        operation_el = next((c for c in request if isinstance(c.tag, str)), None) if request is not None else None
        if operation_el is None:
            return self._fault(400, "Sender", "WellFormed", "no operation in Body")
        operation = operation_el.tag.rsplit("}", 1)[-1]
        authenticated, problem = self._check_auth(root)
        with self._lock:
            self.calls.append(Call(operation, authenticated, problem))
        if "hang" in self.quirks:
            return None
        if "html" in self.quirks:
            return 200, "text/html; charset=utf-8", msg.HTML_PAGE
        if "oversized" in self.quirks:
            return 200, "application/soap+xml; charset=utf-8", msg.endless()
        protected = operation not in PRE_AUTH or "auth_preauth" in self.quirks
        if self.username is not None and protected and not authenticated:
            return self._fault(400, "Sender", "NotAuthorized", "Sender not Authorized")
        return self._dispatch(operation, operation_el)

    def _dispatch(self, operation: str, request: Element) -> tuple[int, str, bytes]:
        q = self.quirks
        if operation == "GetSystemDateAndTime":
            return self._ok(msg.system_date_and_time(self.camera_now(), q))
        if operation == "GetDeviceInformation":
            return self._ok(msg.device_information(self.manufacturer, self.model, self.firmware, self.serial, self.hardware))
        if operation == "GetServices" and "no_services" not in q:
            return self._ok(msg.services(self.xaddr, self.media_xaddr))
        if operation == "GetCapabilities":
            return self._ok(msg.capabilities(self.xaddr, self.media_xaddr, q))
        if operation == "GetProfiles":
            return self._ok(msg.profiles(self._profiles, q))
        if operation in ("GetStreamUri", "GetSnapshotUri"):
            token = xmlsafe.text(request, "ProfileToken")
            profile = next((p for p in self._profiles if p.token == token), None)
            if profile is None:
                return self._fault(400, "Sender", "NoProfile", f"no profile {token!r}")
            uri = profile.uri if operation == "GetStreamUri" else f"http://{self.host}:{self._http_port}/onvif/snapshot/{profile.token}.jpg"
            return self._ok(msg.media_uri(operation, uri, q))
        return self._fault(500, "Receiver", "ActionNotSupported", f"{operation} is not supported")

    def _ok(self, payload: str) -> tuple[int, str, bytes]:
        return 200, "application/soap+xml; charset=utf-8", msg.envelope(payload, self.quirks)

    def _fault(self, status: int, code: str, subcode: str, reason: str) -> tuple[int, str, bytes]:
        # faults are sent clean: the quirks are about answers, and a test of
        # a quirk should fail on the quirk, not on an auth fault garbled by it
        return status, "application/soap+xml; charset=utf-8", msg.envelope(msg.fault(code, subcode, reason), frozenset())

    def _check_auth(self, root: Element) -> tuple[bool, str | None]:
        """Validate the UsernameToken: user, PasswordDigest, Created vs our clock, fresh nonce."""
        token = xmlsafe.first(root, "Header", "Security", "UsernameToken")
        if token is None or self.username is None:
            return False, None
        password_el = xmlsafe.first(token, "Password")
        nonce, created = xmlsafe.text(token, "Nonce"), xmlsafe.text(token, "Created")
        if xmlsafe.text(token, "Username") != self.username:
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
            hashlib.sha1(raw_nonce + created.encode() + (self.password or "").encode()).digest()
        ).decode()
        if not hmac.compare_digest(expected, (password_el.text or "").strip()):
            return False, "wrong digest (password)"
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        skew = (when - self.camera_now()).total_seconds()
        if abs(skew) > self.auth_tolerance_s:
            return False, f"Created is {skew:+.1f} s off the camera clock"
        with self._lock:
            if nonce in self._nonces:
                return False, "replayed nonce"
            self._nonces.append(nonce)
        return True, None


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a "hang" request
    request_queue_size = 128  # fifty clients may connect at once in the benchmark
    timeout = 0  # handle_request() is only called when a connection is waiting

    def __init__(self, address: tuple[str, int], sim: OnvifCameraSimulator) -> None:
        self.sim = sim
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients make several calls in a row
    server_version = "SimCam-ONVIF/1.0"
    timeout = 10  # idle keep-alive connections are closed after this
    server: _HttpServer

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_REQUEST:
            self.send_error(413)
            return
        answer = sim.handle_soap(self.rfile.read(length))
        if answer is None:
            sim._stopping.wait(HANG_S)
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
                if sim._stopping.is_set():
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client gave up reading, as it should

    def send_response(self, code: int, message: str | None = None) -> None:
        # the Date header tells the *camera's* clock, as a real camera's does
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        if "no_date_header" not in self.server.sim.quirks:
            self.send_header("Date", email.utils.format_datetime(self.server.sim.camera_now(), usegmt=True))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)
