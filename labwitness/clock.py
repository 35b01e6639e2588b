"""The clock, passed in rather than read globally (Moonfire ``base/clock.rs``).

Code that needs "now" takes a :class:`Clock`; tests pass a
:class:`FakeClock` (a real small class, not a mock) to step through months of
retention arithmetic or backoff schedules without sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

#: One hour and one UTC day in the index's unit (milliseconds); days in the index are UTC days.
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep; return True early if ``stop`` gets set."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(0.0, seconds))
            return False
        return stop.wait(max(0.0, seconds))


class FakeClock:
    """Deterministic clock for tests: time moves only when slept or advanced."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.slept.append(seconds)
        self.advance(seconds)
        return bool(stop and stop.is_set())


def utc_ms(dt: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (the index's unit)."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: labwitness stores UTC instants only")
    return round(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
