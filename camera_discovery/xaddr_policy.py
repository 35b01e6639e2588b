"""Which service addresses (XAddrs) a scan may talk to (pure).

Any host on the LAN can answer a WS-Discovery probe, and its answer names the
URLs the scanner then POSTs SOAP to — signed with a WS-Security digest of the
admin's camera credentials when some were given. Trusting those URLs would let
one datagram aim the scanner at any service it can reach (an admin API on
127.0.0.1, a host on another VLAN). So a device's services are contacted only
on the host that sent the answer (the datagram's source address), or on a host
the admin asked for by name or address (``--host``, ``hosts`` of a scan).
Everything else is skipped and reported, never contacted.

Hosts are compared as IP addresses when both are literal addresses (so
``127.000.000.001`` or ``2130706433`` is not mistaken for, nor smuggled in as,
``127.0.0.1``: only a dotted quad or an IPv6 literal is an address here); a
DNS name matches only the same name the admin typed — a name is never
resolved to decide, since the answer could be a different address by the time
the request is sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


def host_key(host: str | None) -> str | None:
    """A comparable form of a host: a canonical IP address, else a lower-case name."""
    if not host:
        return None
    host = host.strip().strip("[]").rstrip(".").lower()
    if "%" in host:  # an IPv6 zone (fe80::1%eth0) names no other host
        host = host.split("%", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host or None


def allowed_hosts(source_host: str, asked: Iterable[str] = ()) -> frozenset[str]:
    """The hosts a device that answered from ``source_host`` may be queried on."""
    keys = {host_key(source_host), *(host_key(h) for h in asked)}
    keys.discard(None)
    return frozenset(keys)  # type: ignore[arg-type]


def url_host(url: str) -> str | None:
    try:
        return host_key(urlsplit(url).hostname)
    except ValueError:  # an unparsable URL (bad IPv6 brackets, port) names no host we trust
        return None


def may_contact(url: str, allowed: frozenset[str]) -> bool:
    host = url_host(url)
    return host is not None and host in allowed


def partition(xaddrs: Iterable[str], allowed: frozenset[str]) -> tuple[list[str], list[str]]:
    """``(usable, skipped)`` XAddrs, each in the device's order."""
    usable: list[str] = []
    skipped: list[str] = []
    for x in xaddrs:
        (usable if may_contact(x, allowed) else skipped).append(x)
    return usable, skipped
