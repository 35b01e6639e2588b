"""A camera scan: probe, then query every device found, each failure kept per device.

Owns :func:`discover`, what ``labwitness discover`` and ``POST
/discovery/scan`` run. It never raises for one device's failure: that device
comes back with ``error`` set and whatever was learned. It raises
:class:`~labwitness.errors.DiscoveryError` only when the scan itself cannot
run (a range larger than a /22, no socket).

Bounded: the probe waits ``timeout`` seconds (less for a directed-only scan
whose every target answered); devices are queried by at most ``max_workers``
threads, each request bounded by ``query_timeout``, the whole query phase by
``query_budget`` after which unfinished devices are reported as timed out.

Safe against the LAN: an unusable answer is one counted entry (``bad_replies``),
never a failed scan; a device is queried only on the host that answered or one
the admin named (:mod:`.xaddr_policy`), other addresses are listed in
``skipped_xaddrs`` and never contacted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from camera_discovery import soap, xaddr_policy
from camera_discovery.models import DeviceInfo, DiscoveredDevice, ProbeMatch
from camera_discovery.onvif_client import query_device
from camera_discovery.probe import ProbeResult, probe
from camera_discovery.ws_discovery import DEFAULT_PORT
from labwitness.errors import DeviceError, DeviceUnreachableError

log = logging.getLogger(__name__)


def discover(
    timeout: float = 3.0,
    hosts: Sequence[str] = (),
    *,
    port: int = DEFAULT_PORT,
    multicast: bool = True,
    username: str | None = None,
    password: str | None = None,
    query_devices: bool = True,
    interfaces: Sequence[str] | None = None,
    query_timeout: float = 5.0,
    query_budget: float | None = None,
    max_workers: int = 32,
    expect: Collection[str] = (),
) -> list[DiscoveredDevice]:
    """Find ONVIF cameras; see the module docstring.

    ``hosts`` items are "host", "host:port" or a CIDR of at most /22; they
    get directed probes in addition to (or, with ``multicast=False``, instead
    of) the multicast one. ``interfaces``: see :func:`camera_discovery.probe.probe`.
    ``expect``: endpoint addresses of devices known to be there (the demo's own): the
    probe ends once they all answered instead of waiting out ``timeout``.
    Results are sorted by scope name, then endpoint.
    """
    preload = None
    if query_devices:
        # The WSDLs take about a second to load: overlap it with the probe wait.
        preload = threading.Thread(target=_preload, name="onvif-wsdl-preload", daemon=True)
        preload.start()
    found = probe(timeout, hosts, port=port, multicast=multicast, interfaces=interfaces, expect=expect)
    devices = _bad_answers(found)
    if query_devices and found.matches:
        if preload is not None:
            preload.join()
        budget = query_budget if query_budget is not None else max(10.0, 4 * query_timeout)
        asked = asked_hosts(hosts, found.targets)
        devices += _query_all(found.matches, username, password, query_timeout, budget, max_workers, asked)
    else:
        devices += [DiscoveredDevice.from_match(m) for m in found.matches]
    return sorted(devices, key=lambda d: (d.scopes.name or "", d.endpoint or "", d.source))


def _bad_answers(found: ProbeResult) -> list[DiscoveredDevice]:
    """One entry per responder whose answers were unusable, with their count."""
    devices = [DiscoveredDevice(endpoint=None, source=source, error=message, bad_replies=found.bad_counts.get(source, 1))
               for source, message in found.bad_answers.items()]
    if found.bad_unlisted:
        devices.append(DiscoveredDevice(
            endpoint=None, source="*", bad_replies=found.bad_unlisted,
            error=f"另有 {found.bad_unlisted} 个无法使用的应答（来源过多，未逐一列出）/ {found.bad_unlisted} more "
                  "unusable answers from further sources (too many sources to list)"))
    if devices:
        log.warning("discovery: %d unusable answers from %d sources skipped",
                    sum(d.bad_replies for d in devices), len(found.bad_answers) + bool(found.bad_unlisted))
    return devices


def asked_hosts(hosts: Sequence[str], targets: Sequence[tuple[str, int]]) -> set[str]:
    """The hosts the admin named for this scan: the probed addresses and the names as typed."""
    names = {h.strip().rsplit(":", 1)[0] if h.count(":") == 1 else h.strip() for h in hosts if "/" not in h}
    return {a for a, _ in targets} | {n for n in names if n}


def _preload() -> None:
    try:
        soap.preload()
    except Exception:  # the queries will load (and report) it again
        log.exception("loading the ONVIF WSDLs failed")


def _query_all(
    matches: list[ProbeMatch],
    username: str | None,
    password: str | None,
    query_timeout: float,
    budget: float,
    max_workers: int,
    asked: set[str],
) -> list[DiscoveredDevice]:
    results: dict[str, DiscoveredDevice] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(matches))), thread_name_prefix="onvif-query")
    futures: dict[Future[DiscoveredDevice], ProbeMatch] = {
        pool.submit(_query_one, m, username, password, query_timeout, asked): m for m in matches
    }
    deadline = time.monotonic() + budget
    pending = set(futures)
    try:
        while pending and time.monotonic() < deadline:
            done, pending = wait(pending, timeout=deadline - time.monotonic(), return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future].endpoint] = future.result()
    finally:
        # unfinished queries end by their own request timeouts; do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)
    for future in pending:
        match = futures[future]
        results[match.endpoint] = DiscoveredDevice.from_match(
            match, error=f"查询超时 / the device's ONVIF queries did not finish within {budget:g} s"
        )
    return [results[m.endpoint] for m in matches]


def _query_one(match: ProbeMatch, username: str | None, password: str | None, timeout: float,
               asked: set[str]) -> DiscoveredDevice:
    allowed = xaddr_policy.allowed_hosts(match.source.rsplit(":", 1)[0], asked)
    xaddrs, skipped = xaddr_policy.partition(match.xaddrs, allowed)
    if skipped:
        log.warning("discovery: %s (answered from %s) named service addresses on other hosts; not contacted: %s",
                    match.endpoint, match.source, " ".join(skipped))
    if not xaddrs:
        error = ("设备未提供服务地址 / the device announced no HTTP XAddr" if not skipped else
                 "设备的服务地址都不在应答的主机上，未连接 / every service address the device named is on another "
                 "host than the one that answered; not contacted (scan that host with --host to query it)")
        return DiscoveredDevice.from_match(match, error=error, skipped_xaddrs=skipped)
    error: DeviceError | None = None
    for xaddr in xaddrs:
        try:
            info = query_device(xaddr, username, password, timeout, allowed_hosts=allowed)
            return DiscoveredDevice.from_match(match, info, skipped_xaddrs=skipped)
        except DeviceUnreachableError as e:
            error = e  # Camera quirk: a dead XAddr (old IP, IPv6 link-local) listed first
        except DeviceError as e:
            error = e
            break
        except Exception as e:  # a bug here must not end the scan for every other device
            log.exception("querying %s failed", xaddr)
            return DiscoveredDevice.from_match(match, error=f"内部错误 / internal error querying {xaddr}: {e!r}",
                                               skipped_xaddrs=skipped)
    assert error is not None
    partial = error.partial if isinstance(error.partial, DeviceInfo) else None
    return DiscoveredDevice.from_match(match, partial, error=str(error), skipped_xaddrs=skipped)
