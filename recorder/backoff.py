"""Retry schedules (pure): the reconnect backoff, and a retry gate built on it.

:class:`Backoff` is a worker's reconnect schedule: first retry immediate, then
exponential, capped.  :class:`RetryGate` holds a failing resource (the object
store, the index database) closed until its next retry, the delay backing off
while the failures go on; the uploader keeps one for each.  Time is passed in
(monotonic seconds), so both are tested without sleeping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Backoff:
    initial_s: float = 0.25
    cap_s: float = 10.0
    factor: float = 2.0
    failures: int = 0

    def next_delay(self) -> float:
        """Delay before the next attempt, given the failures so far."""
        self.failures += 1
        if self.failures == 1:
            return 0.0
        return min(self.cap_s, self.initial_s * self.factor ** (self.failures - 2))

    def reset(self) -> None:
        self.failures = 0


class RetryGate:
    """Closed from a failure until its retry time; open again for good after a success.

    The delay after a failure is the backoff's next delay, never less than ``min_delay_s``
    (a first failure is not retried at once: the resource just said it is down).  Safe
    to share between threads: parallel failures each advance the backoff once.
    """

    def __init__(self, initial_s: float, cap_s: float, min_delay_s: float = 0.5) -> None:
        self.backoff = Backoff(initial_s=initial_s, cap_s=cap_s)
        self.min_delay_s = min_delay_s
        self.retry_at = 0.0  # monotonic seconds; 0: open
        self._lock = threading.Lock()

    def is_open(self, now: float) -> bool:
        return now >= self.retry_at

    def failed(self, now: float) -> float:
        """Close the gate until the next retry; the delay until then (seconds)."""
        with self._lock:
            delay = max(self.backoff.next_delay(), self.min_delay_s)
            self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.backoff.reset()
        self.retry_at = 0.0
