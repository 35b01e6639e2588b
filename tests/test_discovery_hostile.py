"""Discovery against a hostile LAN, over real UDP and HTTP on loopback.

Any host can answer a WS-Discovery probe with anything. A bad answer is one
counted entry of the scan, never a failed scan (issue 12, "Discovery"); and an
answer cannot aim the scanner's SOAP requests (signed with the admin's
credentials) at a host other than the one that answered, unless the admin
named that host.
"""

from __future__ import annotations

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from camera_discovery import ws_discovery as wsd
from camera_discovery.discovery import discover
from camera_discovery.onvif_client import query_device
from camera_discovery.probe import MAX_BAD_SOURCES
from simulator.onvif import OnvifCameraSimulator

from conftest import free_port

USER, PASSWORD = "admin", "s3cret-pw"
LOOPBACK = ["127.0.0.1"]

_MATCH = wsd.build_probe_matches("urn:uuid:1", "urn:uuid:2", "urn:uuid:3", ["http://127.0.0.1:1/x"], [])
HOSTILE = {
    "idna": b'<?xml version="1.0" encoding="idna"?><a/>',
    "undefined": b'<?xml version="1.0" encoding="undefined"?><a/>',
    "unicode_escape": b'<?xml version="1.0" encoding="unicode_escape"?><a>\\N{x}</a>',
    "base64": b'<?xml version="1.0" encoding="base64"?><a/>',
    "punycode": b'<?xml version="1.0" encoding="punycode"?><a/>',
    "utf32_lie": b'<?xml version="1.0" encoding="utf-32"?>' + _MATCH[38:],
    "gbk_garbage": b'<?xml version="1.0" encoding="GBK"?>\xff\xfe\xfd<a',
    "truncated": _MATCH[: len(_MATCH) // 2],
    "binary": os.urandom(1400),
    "nuls": b"\x00" * 512,
    "empty_ish": b" \r\n ",
    "html": b"<!DOCTYPE html><html><body>login</body></html>",
    "dtd": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
    "huge_nesting": b"<a>" * 9000 + b"</a>" * 9000,  # 63 KB: about the largest UDP datagram
    "huge_text": b"<ProbeMatches>" + b"x" * 65000,
    "not_probe_matches": b"<Envelope><Body><Hello/></Body></Envelope>",
}


pytestmark = pytest.mark.usefixtures("onvif_wsdls")


class Responder:
    """A host on the LAN answering every directed probe with ``answers(message_id)``,
    each datagram from each of its ``sources`` sockets (all on ``host``)."""

    def __init__(self, answers, host: str = "127.0.0.1", sources: int = 1) -> None:
        self.answers = answers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.senders = [self.sock] + [self._extra(host) for _ in range(sources - 1)]
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        self.sent = 0
        self._answered: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _extra(host: str) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        return s

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65535)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            message_id, _ = wsd.parse_probe(data, "scanner")
            if self._answered:  # one set of answers per scan: the count is then exact
                continue
            self._answered.add(message_id)
            for payload in self.answers(message_id):
                for s in self.senders:
                    s.sendto(payload, sender)
                    self.sent += 1

    def __enter__(self) -> "Responder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2)
        for s in self.senders:
            s.close()


class Recorder(ThreadingHTTPServer):
    """An HTTP service that only records whether anyone talked to it."""

    daemon_threads = True

    def __init__(self, host: str, family: int = socket.AF_INET) -> None:
        self.address_family = family
        self.hits: list[tuple[str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.hits.append((self.path, body))
                self.send_response(500)
                self.end_headers()

            def log_message(self, *a):
                pass

        super().__init__((host, 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self, path: str = "/onvif/device_service") -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"

    def __enter__(self) -> "Recorder":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


def _scan(wsd_port: int, hosts: list[str], **kw):
    kw.setdefault("timeout", 1.5)
    return discover(hosts=hosts, port=wsd_port, interfaces=LOOPBACK, username=USER, password=PASSWORD,
                    query_timeout=2.0, **kw)


def test_hostile_answers_are_skipped_and_counted_and_the_camera_is_still_found(wsd_port):
    sim = OnvifCameraSimulator(name="Good cam", discovery_port=wsd_port, username=USER, password=PASSWORD).start()
    try:
        with Responder(lambda mid: list(HOSTILE.values())) as hostile:
            devices = _scan(wsd_port, [hostile.address, sim.discovery_address])
    finally:
        sim.stop()
    good = [d for d in devices if d.endpoint == sim.endpoint]
    assert len(good) == 1 and good[0].error is None and good[0].profiles
    bad = [d for d in devices if d.endpoint is None]
    assert [d.source for d in bad] == [hostile.address]
    assert bad[0].bad_replies == len(HOSTILE) == hostile.sent
    assert bad[0].error and "Traceback" not in bad[0].error
    assert bad[0].to_json()["bad_replies"] == len(HOSTILE)


def test_a_flood_of_sources_is_counted_not_listed(wsd_port):
    with Responder(lambda mid: [HOSTILE["idna"]], sources=MAX_BAD_SOURCES + 6) as hostile:
        devices = _scan(wsd_port, [hostile.address], timeout=1.0)
    assert all(d.endpoint is None for d in devices)
    assert len(devices) == MAX_BAD_SOURCES + 1  # each source listed, then one entry for the rest
    assert sum(d.bad_replies for d in devices) == hostile.sent == MAX_BAD_SOURCES + 6
    (rest,) = [d for d in devices if d.source == "*"]
    assert rest.bad_replies == 6


def _matches(xaddrs: list[str], endpoint: str = "urn:uuid:6d1f7a3e-0000-4000-8000-00000000beef"):
    return lambda mid: [wsd.build_probe_matches(wsd.new_message_id(), mid, endpoint, xaddrs, [])]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_service_addresses_on_other_hosts_are_never_contacted(wsd_port):
    with Recorder("127.0.0.2") as other_host, Recorder("127.0.0.1") as same_host:
        xaddrs = [other_host.url(), other_host.url().replace("127.0.0.2", "2130706434"),
                  f"http://127.0.0.2@127.0.0.3:{other_host.server_address[1]}/x"]
        six = Recorder("::1", socket.AF_INET6) if _ipv6_loopback() else None
        if six is not None:
            six.__enter__()
            xaddrs.append(six.url())
        try:
            with Responder(_matches(xaddrs)) as device:
                (found,) = _scan(wsd_port, [device.address])
        finally:
            if six is not None:
                six.__exit__()
        assert other_host.hits == [] and (six is None or six.hits == [])
        assert found.skipped_xaddrs == xaddrs
        assert found.error and "not contacted" in found.error
        assert found.to_json()["skipped_xaddrs"] == xaddrs

        # the same device naming a service on the host it answered from is queried there
        with Responder(_matches([other_host.url(), same_host.url()])) as device:
            (found,) = _scan(wsd_port, [device.address])
        assert other_host.hits == [] and len(same_host.hits) >= 1
        assert found.skipped_xaddrs == [other_host.url()]


def test_a_host_the_admin_named_may_be_contacted(wsd_port):
    with Recorder("127.0.0.2") as other_host:
        with Responder(_matches([other_host.url()])) as device:
            # a directed probe of 127.0.0.2 (nothing answers it there) is the admin asking for that host
            (found, *_) = [d for d in _scan(wsd_port, [device.address, f"127.0.0.2:{free_port()}"]) if d.endpoint]
        assert len(other_host.hits) >= 1 and found.skipped_xaddrs == []
        path, body = other_host.hits[0]
        assert path == "/onvif/device_service" and b"GetSystemDateAndTime" in body


class _MediaElsewhere(OnvifCameraSimulator):
    """A camera whose GetServices/GetCapabilities name its media service on another host."""

    media_target = ""

    @property
    def media_xaddr(self) -> str:
        return self.media_target


def test_a_media_service_on_another_host_is_not_contacted(wsd_port):
    with Recorder("127.0.0.2") as other_host:
        sim = _MediaElsewhere(discovery_port=wsd_port, username=USER, password=PASSWORD)
        sim.media_target = other_host.url("/onvif/media_service")
        sim.start()
        try:
            (found,) = _scan(wsd_port, [sim.discovery_address])
            direct = query_device(sim.xaddr, USER, PASSWORD, 2.0)  # an address the caller chose: same rule
        finally:
            sim.stop()
    assert other_host.hits == []
    assert found.error is None and found.profiles and found.profiles[0].stream_uri
    assert found.skipped_xaddrs == [sim.media_target]
    assert direct.skipped_xaddrs == [sim.media_target] and direct.profiles
