"""A camera that answers with real cameras' stored ONVIF answers (tests only).

:class:`ReplayCamera` serves one directory of ``tests/fixtures/onvif/`` over
real HTTP on 127.0.0.1 (any path; ``…/Media2`` paths get the ``Media2-*``
files) and, when the directory has a ``ProbeMatches.xml``, real WS-Discovery
over UDP on 127.0.0.1. Each SOAP request is answered with the stored body of
its operation, byte for byte; an operation without a stored body gets the
fault a device gives for an operation it lacks (``ter:ActionNotSupported``),
and a GetStreamUri/GetSnapshotUri for a profile other than the one the
answer was given for (``stream_uri_tokens`` in ``sources.json``) gets
``ter:NoProfile``. Two bodies are not served as stored, both said in
``sources.json``: a quoted payload without its envelope gets a SOAP 1.2
envelope around it, and the ProbeMatches' RelatesTo becomes the MessageID of
the probe being answered (what the camera did for the probe it answered).
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from camera_discovery import ws_discovery, xmlsafe

FIXTURES = Path(__file__).parent / "fixtures" / "onvif"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


def sources() -> dict:
    return json.loads((FIXTURES / "sources.json").read_text(encoding="utf-8"))


def stream_tokens(device: str) -> dict[str, str | None]:
    """file name → the profile token its URI answer belongs to (None: not recorded)."""
    tokens = sources()["devices"][device].get("stream_uri_tokens", {})
    return {name: (None if value.startswith("unknown") else value.split()[0]) for name, value in tokens.items()}


@dataclass(frozen=True)
class ReplayCall:
    path: str
    operation: str
    profile_token: str | None
    answered_with: str | None  # the fixture file, None when a fault was sent


def _fault(subcode: str, reason: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{SOAP12}" '
        'xmlns:ter="http://www.onvif.org/ver10/error"><env:Body><env:Fault>'
        "<env:Code><env:Value>env:Receiver</env:Value><env:Subcode>"
        f"<env:Value>ter:{subcode}</env:Value></env:Subcode></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{reason}</env:Text></env:Reason>'
        "</env:Fault></env:Body></env:Envelope>"
    ).encode()


class ReplayCamera:
    """One fixture directory as a camera on loopback; a context manager."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.directory = FIXTURES / device
        if not self.directory.is_dir():
            raise ValueError(f"no fixtures for {device!r}")
        self.tokens = stream_tokens(device)
        self.calls: list[ReplayCall] = []
        self._server: ThreadingHTTPServer | None = None
        self._udp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def xaddr(self) -> str:
        return f"http://127.0.0.1:{self.port}/onvif/device_service"

    @property
    def media2_xaddr(self) -> str:
        return f"http://127.0.0.1:{self.port}/onvif/Media2"

    @property
    def discovery_port(self) -> int:
        assert self._udp is not None
        return self._udp.getsockname()[1]

    # -- answers -------------------------------------------------------------

    def answer(self, path: str, request: bytes) -> tuple[int, bytes]:
        root = xmlsafe.parse(request, "request to the replay camera")
        body = xmlsafe.first(root, "Body")
        payload = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
        operation = payload.tag.rsplit("}", 1)[-1] if payload is not None else ""
        token = xmlsafe.text(payload, "ProfileToken") if payload is not None else None
        name = ("Media2-" if "media2" in path.lower() else "") + operation + ".xml"
        stored = self.directory / name
        if not stored.is_file():
            self.calls.append(ReplayCall(path, operation, token, None))
            return 500, _fault("ActionNotSupported", f"no stored answer for {name}")
        if name in self.tokens and self.tokens[name] is not None and token != self.tokens[name]:
            self.calls.append(ReplayCall(path, operation, token, None))
            return 500, _fault("NoProfile", f"the stored {name} answers profile {self.tokens[name]}")
        self.calls.append(ReplayCall(path, operation, token, name))
        return 200, envelope(stored.read_bytes())

    def _probe_matches(self, message_id: str) -> bytes | None:
        stored = self.directory / "ProbeMatches.xml"
        if not stored.is_file():
            return None
        data = stored.read_bytes()
        relates_to = xmlsafe.text(xmlsafe.parse(data, "stored ProbeMatches"), "Header", "RelatesTo")
        assert relates_to, "a stored ProbeMatches without RelatesTo"
        return data.replace(relates_to.encode(), message_id.encode(), 1)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> ReplayCamera:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                status, data = camera.answer(self.path, self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._threads.append(threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True))
        if (self.directory / "ProbeMatches.xml").is_file():
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp.bind(("127.0.0.1", 0))
            self._udp.settimeout(0.2)
            self._threads.append(threading.Thread(target=self._discovery, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def _discovery(self) -> None:
        assert self._udp is not None
        while not self._stopping.is_set():
            try:
                data, sender = self._udp.recvfrom(ws_discovery.MAX_DATAGRAM)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            message_id, _types = ws_discovery.parse_probe(data, f"{sender[0]}:{sender[1]}")
            answer = self._probe_matches(message_id or "")
            if answer is not None:
                self._udp.sendto(answer, sender)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._udp is not None:
            self._udp.close()

    def __enter__(self) -> ReplayCamera:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def envelope(stored: bytes) -> bytes:
    """The stored answer as sent: as is, or a quoted Body payload inside a SOAP 1.2 envelope."""
    root = xmlsafe.parse(stored, "stored answer")
    if xmlsafe.local(root.tag) == "envelope":
        return stored
    return (f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{SOAP12}"><env:Body>'.encode()
            + stored.strip() + b"</env:Body></env:Envelope>")
