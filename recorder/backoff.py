"""Reconnect schedule: first retry immediate, then exponential, capped (pure)."""

from __future__ import annotations

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
