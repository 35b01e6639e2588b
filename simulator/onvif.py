"""A simulated ONVIF camera: the object tests, the demo and ``bench.discover`` start and stop.

Owns :class:`OnvifCameraSimulator`: its identity, addresses and clock (host
clock + ``clock_offset_s``, which SetSystemDateAndTime and SetNTP change as a
camera's do: :meth:`~OnvifCameraSimulator.set_time`) and its one thread, which waits on the HTTP socket
of the device and media services (:mod:`.onvif_service`) and the UDP sockets
of WS-Discovery (:mod:`.onvif_discovery`) and hands each readable socket to
its owner.  Its stream URIs are the RTSP URLs it was given (the project's RTSP
test source, :mod:`simulator.rtsp`); it misbehaves on request: see
:data:`~.onvif_messages.QUIRKS`.

Several can run at once: each has its own endpoint reference and HTTP port.
They may share the WS-Discovery port; :attr:`~OnvifCameraSimulator.discovery_address`
says where each answers directed probes.

    with OnvifCameraSimulator(name="Lab A", rtsp_url=rtsp.url("/live"), discovery_port=port) as cam:
        discover(hosts=[cam.discovery_address], port=port, interfaces=["127.0.0.1"])
"""

from __future__ import annotations

import select
import socket
import threading
import uuid
from datetime import datetime, timedelta
from types import TracebackType
from urllib.parse import quote

from camera_discovery import ws_discovery as wsd
from labwitness.clock import Clock, SystemClock
from simulator import onvif_messages as msg
from simulator.onvif_discovery import DiscoveryResponder
from simulator.onvif_service import Answer, Call, HttpServer, SoapService


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
        #: the clock settings GetSystemDateAndTime/GetNTP report and the Set calls change
        self.date_time_type = "NTP"
        self.ntp_from_dhcp = False
        self.ntp_servers: list[tuple[str, str]] = []
        self.quirks = frozenset(quirks)
        self.host = host
        self.auth_tolerance_s = auth_tolerance_s
        self.endpoint = endpoint or f"urn:uuid:{uuid.uuid4()}"
        self.manufacturer, self.model, self.firmware, self.hardware = manufacturer, model, firmware, hardware
        self.serial = serial or self.endpoint.rsplit(":", 1)[-1][:12].upper()
        self.location = location
        self.clock = clock or SystemClock()
        self.profiles = [msg.Profile("Profile_1", "mainStream", *main_resolution, encoding, rtsp_url)]
        if sub_rtsp_url:
            self.profiles.append(msg.Profile("Profile_2", "subStream", *sub_resolution, encoding, sub_rtsp_url))
        self._http_port = http_port
        self._service = SoapService(self)
        self._discovery = DiscoveryResponder(self, host, discovery_port, multicast)
        self._stopping = threading.Event()
        self._server: HttpServer | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read -----------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every SOAP request seen, in order."""
        return self._service.calls

    @property
    def multicast_active(self) -> bool:
        """True once the multicast group is joined (see start())."""
        return self._discovery.multicast_active

    def handle_soap(self, body: bytes) -> Answer | None:
        """``(status, content type, body)`` for one request; None means "never answer"."""
        return self._service.answer(body)

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
        return self._discovery.port

    @property
    def discovery_address(self) -> str:
        """``host:port`` where this camera answers directed (unicast) probes."""
        return f"{self.host}:{self._discovery.unicast_port}"

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

    def set_time(self, date_time_type: str, utc: datetime | None) -> None:
        """SetSystemDateAndTime: ``Manual`` sets the clock to ``utc`` (the offset becomes what it is
        from the host's clock now); ``NTP`` with a server set syncs it.  The simulated camera reaches
        no real NTP server: any server it is given stands for the host's own clock (offset 0)."""
        self.date_time_type = date_time_type
        if utc is not None:
            self.clock_offset_s = (utc - self.clock.now()).total_seconds()
        elif date_time_type == "NTP" and self.ntp_servers:
            self.clock_offset_s = 0.0

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> OnvifCameraSimulator:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        try:
            self._server = HttpServer((self.host, self._http_port), self._service, self._stopping)
            self._http_port = self._server.server_address[1]
            self._discovery.open()
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
        self._discovery.close()
        if self._wake is not None:
            for s in self._wake:
                s.close()
            self._wake = None

    def _serve(self) -> None:
        """One thread per simulator: HTTP accepts and WS-Discovery, no polling."""
        assert self._server is not None and self._wake is not None
        udp = list(self._discovery.sockets)
        listening = [self._server.socket, *udp, self._wake[0]]
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select(listening, [], [])
            except (OSError, ValueError):
                return  # sockets closed under us by stop()
            for sock in readable:
                if sock is self._server.socket:
                    self._server.handle_request()  # accepts; ThreadingMixIn serves it in a thread
                elif sock in udp:
                    self._discovery.answer(sock)
