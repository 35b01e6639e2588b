"""Per-source limits on what anonymous callers can make us write to the audit log.

Anonymous ``/verify/{id}`` calls and failed sign-ins (the web form, one-time
links, a bad bearer token on the API) are audited, and each audit row is a
committed, synced write.  Unlimited, six clients wrote ~1000 rows in 15 s and
pushed every real event out of the audit page.  So, per source address (an
IPv6 client by its /64, which one host usually owns whole) and kind of event:

1. the first ``burst`` events of a ``window_s`` window are served and audited
   one by one, as before;
2. beyond that the request is refused (429 with ``Retry-After``, the seconds
   until the window ends) and only counted;
3. when the window has ended, one summary row ``{kind}.flood`` per source and
   window records how many were refused (written on the next request that
   touches the limiter, by the app's periodic flush, and at shutdown).

A flood therefore costs at most ``burst + 1`` audit rows per source per window.
For failed sign-ins only failures count, but once a source has used up its
budget every attempt from it is refused until the window ends, a correct guess
included (otherwise the 401/200 difference keeps the guessing useful).

Counters live in this process's memory (one process per data directory,
docs/decisions.md 17); a restart gives every source a fresh budget.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from dataclasses import dataclass
from typing import Callable

from fastapi import Request

from index.audit import AuditLog
from labwitness.clock import Clock, utc_ms
from labwitness.errors import LabwitnessError

from api import deps


@dataclass(frozen=True)
class Limit:
    kind: str  # "verify" | "auth"; the summary row's action is f"{kind}.flood"
    burst: int  # events per source and window served and audited one by one
    window_s: float


VERIFY = Limit("verify", 20, 60.0)
AUTH_FAILED = Limit("auth", 10, 60.0)


@dataclass
class _Window:
    start: float  # monotonic seconds
    start_ms: int  # wall clock, for the summary row
    events: int = 0
    refused: int = 0


@dataclass(frozen=True)
class Flood:
    """One source's refused requests in one window (the summary row's content)."""

    limit: Limit
    source: str
    start_ms: int
    refused: int

    def detail(self) -> dict:
        return {"refused": self.refused, "served": self.limit.burst, "window_s": self.limit.window_s,
                "window_start_ms": self.start_ms}


class RateLimitedError(LabwitnessError):
    code = "rate-limited"
    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"请求过于频繁，请 {retry_after_s} 秒后重试 / too many requests from this address: "
                         f"retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}


class SourceLimiter:
    def __init__(self, clock: Clock, max_sources: int = 10_000) -> None:
        self.clock = clock
        self.max_sources = max_sources
        self._windows: dict[tuple[str, str], _Window] = {}
        self._limits: dict[str, Limit] = {}
        self._pending: list[Flood] = []  # ended windows whose summary row is not written yet
        self._lock = threading.Lock()
        self._draining = threading.Lock()

    def hit(self, limit: Limit, source: str) -> int | None:
        """Count one event; None when it is within the budget (serve and audit it),
        else the seconds to wait (refused, counted for the summary)."""
        return self._count(limit, source, only_if_over=False)

    def refuse_if_over(self, limit: Limit, source: str) -> int | None:
        """Seconds to wait if ``source`` has used up its budget (the attempt is then
        counted as refused), else None without counting anything."""
        return self._count(limit, source, only_if_over=True)

    def _count(self, limit: Limit, source: str, only_if_over: bool) -> int | None:
        now = self.clock.monotonic()
        with self._lock:
            self._limits[limit.kind] = limit
            self._end_windows(now)
            key = (limit.kind, source)
            w = self._windows.get(key)
            if w is None:
                if only_if_over:
                    return None
                self._make_room()
                w = self._windows[key] = _Window(now, utc_ms(self.clock.now()))
            if w.events < limit.burst:
                if only_if_over:
                    return None
                w.events += 1
                return None
            w.refused += 1
            return max(1, math.ceil(w.start + limit.window_s - now))

    def _end_windows(self, now: float, every: bool = False) -> None:
        for key, w in list(self._windows.items()):
            limit = self._limits[key[0]]
            if every or now >= w.start + limit.window_s:
                del self._windows[key]
                if w.refused:
                    self._pending.append(Flood(limit, key[1], w.start_ms, w.refused))

    def _make_room(self) -> None:
        """Bounded memory under a flood from very many addresses: the oldest window
        ends early (its refusals so far still get their summary row)."""
        if len(self._windows) < self.max_sources:
            return
        key, w = min(self._windows.items(), key=lambda kv: kv[1].start)
        del self._windows[key]
        if w.refused:
            self._pending.append(Flood(self._limits[key[0]], key[1], w.start_ms, w.refused))

    def drain(self, write: Callable[[Flood], None], final: bool = False) -> int:
        """Hand every ended window's summary to ``write`` (all windows when ``final``);
        a summary leaves the queue only once ``write`` returned, so an audit log that
        is down keeps it for the next drain.  One drain at a time."""
        if not self._draining.acquire(blocking=False):
            return 0
        try:
            with self._lock:
                self._end_windows(self.clock.monotonic(), every=final)
            done = 0
            while True:
                with self._lock:
                    if not self._pending:
                        return done
                    flood = self._pending[0]
                write(flood)
                with self._lock:
                    self._pending.pop(0)
                done += 1
        finally:
            self._draining.release()


def source_of(request: Request) -> str:
    """The caller's address; an IPv6 address by its /64 (one host usually has all of it)."""
    host = request.client.host if request.client else "?"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def _limiter(request: Request) -> SourceLimiter:
    return request.app.state.limiter


def write_floods(limiter: SourceLimiter, audit: AuditLog, final: bool = False) -> int:
    """Write the summary rows of ended windows to the audit log."""
    return limiter.drain(lambda f: audit.append(f"public@{f.source}", f"{f.limit.kind}.flood", "", f.detail(), "public"),
                         final=final)


def admit(request: Request, limit: Limit) -> None:
    """Count one event of ``request``'s source; raise :class:`RateLimitedError` beyond the budget."""
    lim = _limiter(request)
    wait = lim.hit(limit, source_of(request))
    write_floods(lim, deps.audit(request))
    if wait is not None:
        raise RateLimitedError(wait)


def refuse_if_over(request: Request, limit: Limit) -> None:
    """Raise :class:`RateLimitedError` when the source has used up its budget (before
    checking a credential: a blocked source learns nothing about its guess)."""
    lim = _limiter(request)
    wait = lim.refuse_if_over(limit, source_of(request))
    write_floods(lim, deps.audit(request))
    if wait is not None:
        raise RateLimitedError(wait)


def audit_failure(request: Request, action: str, detail: dict | None = None) -> None:
    """A failed authentication (``action``: ``ui.signin_failed``, ``auth.failed``) from
    ``request``'s source: audited within the budget, else only counted for the
    ``auth.flood`` summary and refused (429)."""
    admit(request, AUTH_FAILED)
    host = request.client.host if request.client else "?"
    deps.audit(request).append(f"public@{host}", action, "", detail or {}, "public")
