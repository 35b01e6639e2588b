"""Sending WS-Discovery probes and collecting the answers (the network half).

Owns :func:`probe`: one UDP socket sends Probes by multicast on each chosen
interface and by unicast to each target, at a bounded rate, repeats each once
(UDP may drop it; SOAP-over-UDP repeats too), and reads ProbeMatches until the
deadline. Answers are de-duplicated by endpoint reference; an unusable
answer is kept as a per-source error, never raised.

Multicast on loopback: the Linux ``lo`` device usually lacks the MULTICAST
flag, yet a datagram sent with ``IP_MULTICAST_IF`` = 127.0.0.1 and
``IP_MULTICAST_LOOP`` on is delivered to sockets that joined the group on
127.0.0.1 (checked on this machine's kernel; no ``ip link set`` needed). So
simulated cameras on one host are found by real multicast, and tests that
use their own port never hear each other.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from camera_discovery import ws_discovery as wsd
from camera_discovery.models import ProbeMatch
from camera_discovery.targets import parse_targets
from labwitness.errors import DeviceProtocolError, DiscoveryError

log = logging.getLogger(__name__)

#: datagrams per second for directed probes: a /22 (2 types x 1022 hosts)
#: goes out in about a second without flooding switches or ARP tables
DEFAULT_RATE_PPS = 2000
_RECV_BUFFER = 1 << 20


#: sources whose unusable answers are listed one by one; beyond, they are only counted
#: (one host spoofing thousands of sources must not grow the result without bound)
MAX_BAD_SOURCES = 64


@dataclass
class ProbeResult:
    matches: list[ProbeMatch] = field(default_factory=list)
    #: ``host:port`` → why its answer was unusable (malformed, DTD, ...)
    bad_answers: dict[str, str] = field(default_factory=dict)
    #: ``host:port`` → how many unusable datagrams it sent (same keys as ``bad_answers``)
    bad_counts: dict[str, int] = field(default_factory=dict)
    #: unusable datagrams from sources beyond :data:`MAX_BAD_SOURCES` (counted, not listed)
    bad_unlisted: int = 0
    #: directed targets (``host:port``) that sent nothing usable
    silent: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    #: datagrams received that answered our probes (before de-duplication)
    answers: int = 0
    #: the directed targets ``(ipv4, port)`` probed, as the admin asked for them
    targets: list[tuple[str, int]] = field(default_factory=list)


#: with ``expect``: how long the probe goes on once every expected device answered (their answers
#: to the other probe types, sent at the same moment, merge into the same match)
EXPECT_GRACE_S = 0.2


def probe(
    timeout: float = 3.0,
    hosts: Sequence[str] = (),
    *,
    port: int = wsd.DEFAULT_PORT,
    multicast: bool = True,
    interfaces: Sequence[str] | None = None,
    rate_pps: int = DEFAULT_RATE_PPS,
    expect: Collection[str] = (),
) -> ProbeResult:
    """Probe for ONVIF devices for ``timeout`` seconds.

    ``hosts`` (see :func:`~camera_discovery.targets.parse_targets`) get
    directed probes at ``port`` unless they name their own. ``interfaces``
    are the IPv4 addresses to multicast from (default: every interface that
    is up, loopback included); a single one is also the address the socket
    binds to, so ``["127.0.0.1"]`` keeps a scan entirely on loopback.
    With ``multicast=False`` the probe ends early once every target answered; with
    ``expect`` (endpoint addresses) once every one of those devices answered.
    """
    targets = parse_targets(hosts, port)
    if not multicast and not targets:
        raise DiscoveryError("没有扫描目标 / nothing to probe: multicast is off and no hosts were given")
    if multicast:
        interfaces = list(interfaces) if interfaces is not None else local_ipv4_addresses()
    bind = interfaces[0] if interfaces and len(interfaces) == 1 else "0.0.0.0"
    if not multicast and targets and all(a.startswith("127.") for a, _ in targets):
        bind = "127.0.0.1"

    started = time.monotonic()
    deadline = started + timeout
    resend_after = min(0.5, timeout / 4)
    message_ids: set[str] = set()
    schedule: list[tuple[float, bytes, tuple[str, int], str | None]] = []
    probes = []
    for types in wsd.PROBE_TYPES:
        mid = wsd.new_message_id()
        message_ids.add(mid)
        probes.append(wsd.build_probe(mid, types))
    # the repeat of the directed probes starts once their first round is out,
    # so the rate limit holds for the whole scan
    round_s = len(targets) * len(probes) / rate_pps
    for repeat in (0.0, resend_after + round_s):
        if multicast:
            for iface in interfaces or []:
                for payload in probes:
                    schedule.append((started + repeat, payload, (wsd.MULTICAST_GROUP, port), iface))
        for i, target in enumerate(targets):
            for j, payload in enumerate(probes):
                offset = (i * len(probes) + j) / rate_pps
                schedule.append((started + repeat + offset, payload, target, None))
    schedule.sort(key=lambda s: s[0])

    collected = _Collector(message_ids)
    wanted = set(targets)
    with _open_socket(bind) as sock:
        next_send = 0
        while True:
            now = time.monotonic()
            while next_send < len(schedule) and schedule[next_send][0] <= now:
                _, payload, address, iface = schedule[next_send]
                next_send += 1
                _send(sock, payload, address, iface)
            if now >= deadline or (not multicast and wanted <= collected.answered):
                break
            if expect and deadline > now + EXPECT_GRACE_S and all(e in collected.found for e in expect):
                # every expected device answered: a moment more for their answers to the other probe types
                deadline = now + EXPECT_GRACE_S
            wake = min(deadline, schedule[next_send][0]) if next_send < len(schedule) else deadline
            readable, _, _ = select.select([sock], [], [], max(0.0, wake - now))
            if readable:
                collected.drain(sock)
    silent = [f"{h}:{p}" for h, p in targets if (h, p) not in collected.answered]
    return ProbeResult(
        list(collected.found.values()), collected.bad, collected.bad_counts, collected.bad_unlisted, silent,
        time.monotonic() - started, collected.answers, targets,
    )


def _open_socket(bind: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
        # TTL 1: WS-Discovery is link-local; a probe must not leave the subnet
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        # loop on: cameras simulated on this very host must hear the probe
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.bind((bind, 0))
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise DiscoveryError(f"无法打开 UDP 端口 / cannot open a UDP socket on {bind}: {e}") from e
    return sock


def _send(sock: socket.socket, payload: bytes, address: tuple[str, int], iface: str | None) -> None:
    try:
        if iface is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface))
        sock.sendto(payload, address)
    except BlockingIOError:
        log.debug("send buffer full; probe to %s:%s dropped (it is repeated)", *address)
    except OSError as e:
        # an interface without a route for multicast, a host unreachable:
        # that address gets no answer, the scan goes on
        log.debug("probe to %s:%s via %s failed: %s", address[0], address[1], iface or "route", e)


class _Collector:
    """Answers read so far: matches by endpoint, unusable ones by source."""

    def __init__(self, message_ids: set[str]) -> None:
        self.message_ids = message_ids
        self.found: dict[str, ProbeMatch] = {}
        self.bad: dict[str, str] = {}
        self.bad_counts: dict[str, int] = {}
        self.bad_unlisted = 0
        self.answered: set[tuple[str, int]] = set()
        self.answers = 0

    def drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data, (host, port) = sock.recvfrom(wsd.MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # ICMP errors surface here on some systems; they concern one target
                log.debug("recvfrom: %s", e)
                continue
            self.feed(data, host, port)

    def feed(self, data: bytes, host: str, port: int) -> None:
        """Take one datagram. Any host on the LAN can send anything here: whatever
        goes wrong reading it makes it one bad answer, never a failed scan."""
        source = f"{host}:{port}"
        try:
            relates_to, matches = wsd.parse_probe_matches(data, source)
        except DeviceProtocolError as e:
            self._bad(host, port, str(e))
            return
        except Exception as e:  # a parser bug met by a hostile datagram: that datagram's, not the scan's
            if source not in self.bad_counts:
                log.warning("unreadable WS-Discovery answer from %s", source, exc_info=True)
            self._bad(host, port, f"应答无法解析 / the answer could not be read ({type(e).__name__}: {e})")
            return
        if relates_to is not None and relates_to.strip() not in self.message_ids:
            return  # an answer to someone else's (or an earlier) probe
        self.answered.add((host, port))
        self.answers += 1
        for match in matches:
            known = self.found.get(match.endpoint)
            self.found[match.endpoint] = match if known is None else known.merged(match)

    def _bad(self, host: str, port: int, why: str) -> None:
        source = f"{host}:{port}"
        self.answered.add((host, port))
        if source in self.bad_counts or len(self.bad_counts) < MAX_BAD_SOURCES:
            self.bad.setdefault(source, why[:500])
            self.bad_counts[source] = self.bad_counts.get(source, 0) + 1
        else:
            self.bad_unlisted += 1


_SIOCGIFFLAGS, _SIOCGIFADDR, _IFF_UP = 0x8913, 0x8915, 0x1


def local_ipv4_addresses() -> list[str]:
    """The IPv4 address of every interface that is up (Linux ioctls).

    Where the ioctls are unavailable, ``["0.0.0.0"]`` lets the routing table
    pick one interface.
    """
    try:
        import fcntl
    except ImportError:
        return ["0.0.0.0"]
    addresses: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, request)[16:18])[0]
                if not flags & _IFF_UP:
                    continue
                address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, request)[20:24])
            except OSError:
                continue  # no IPv4 address on this interface
            if address not in addresses:
                addresses.append(address)
    return addresses or ["0.0.0.0"]
