"""Which addresses a directed (unicast) probe goes to: hosts, host:port, CIDR (pure).

Owns the bounds of a directed scan: a CIDR may be at most a /22 (1022
hosts), and the whole list at most :data:`MAX_TARGETS` addresses, so a typo
such as ``10.0.0.0/8`` is refused instead of sending 16 million probes.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from labwitness.errors import DiscoveryError

#: the widest CIDR accepted (a /22 is 1022 hosts: a large lab's camera VLAN)
MIN_PREFIX = 22
MAX_TARGETS = 1024


def parse_targets(hosts: Iterable[str], default_port: int) -> list[tuple[str, int]]:
    """``["10.0.0.5", "cam.lab:3702", "10.0.1.0/24"]`` → unique ``(ipv4, port)`` in input order.

    Names are resolved here (IPv4 only), once, so a scan sends to addresses.
    Raises :class:`DiscoveryError` with a message for the person who typed it.
    """
    targets: dict[tuple[str, int], None] = {}
    for raw in hosts:
        item = raw.strip()
        if not item:
            continue
        if "/" in item:
            addresses, port = _cidr(item), default_port
        else:
            host, port = _split_port(item, default_port)
            addresses = [_resolve(host)]
        for address in addresses:
            targets[(address, port)] = None
            if len(targets) > MAX_TARGETS:
                raise DiscoveryError(
                    f"扫描地址过多 / more than {MAX_TARGETS} addresses to probe; narrow the host list"
                )
    return list(targets)


def _cidr(item: str) -> list[str]:
    try:
        network = ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise DiscoveryError(f"无效网段 / not a valid network: {item!r} (e.g. 192.168.1.0/24)") from None
    if network.version != 4:
        raise DiscoveryError(f"暂不支持 IPv6 网段 / IPv6 ranges are not supported: {item!r}")
    if network.prefixlen < MIN_PREFIX:
        raise DiscoveryError(
            f"网段过大 / network {item!r} is larger than a /{MIN_PREFIX} "
            f"({network.num_addresses} addresses); split it or use /{MIN_PREFIX} or smaller"
        )
    # hosts() leaves out the network and broadcast addresses (not for /31, /32)
    return [str(a) for a in network.hosts()]


def _split_port(item: str, default_port: int) -> tuple[str, int]:
    if item.count(":") == 1:
        host, _, port_text = item.partition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise DiscoveryError(f"无效端口 / not a valid port in {item!r}") from None
        if not 0 < port < 65536:
            raise DiscoveryError(f"无效端口 / port out of range in {item!r}")
        return host, port
    if ":" in item:
        raise DiscoveryError(f"暂不支持 IPv6 地址 / IPv6 addresses are not supported: {item!r}")
    return item, default_port


def _resolve(host: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise DiscoveryError(f"无法解析主机名 / cannot resolve host {host!r}: {e.strerror}") from None
    return str(infos[0][4][0])
