"""Time witnesses the retention package can read itself, and reading them all.

:class:`StoreDateSource` reads the object store's ``Date``; whether it is
independent of the host clock is the caller's knowledge (``api.runtime``: an
external endpoint is, the embedded SeaweedFS on this host is not).  The cameras'
clocks are read over ONVIF, which ``retention`` may not import: that source is
built in ``api.time_witnesses`` and handed to the sweep with this one.  A seal
witness's bucket is read through its adapter (``api.witnesses``).
:class:`SealTimeSource` reads the newest seal's time: stamped by this host's
clock when it was written, so it is *not* independent (it cannot satisfy rule 2
of :mod:`retention.time_witness`), but a seal job that runs every interval
bounds the present from both sides -- a clock pushed forward after the last
seal is caught by it even where no camera answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Sequence

from labwitness.clock import Clock, from_ms
from retention.time_witness import Absent, TimeReading, TimeSource
from storage.base import ObjectStore


class StoreDateSource:
    """The S3 store's clock, from the ``Date`` of a bucket HEAD (whole seconds)."""

    def __init__(self, store: ObjectStore, *, independent: bool, name: str = "store") -> None:
        self.store = store
        self.independent = independent
        self.name = name

    def read(self, clock: Clock) -> TimeReading | Absent:
        where = "external endpoint" if self.independent else "embedded store on this host: same clock"
        return date_reading(self.name, self.store.server_time, clock, independent=self.independent,
                            detail=f"{self.store.info.location} ({where})", what="the store")


def date_reading(name: str, server_time: Callable[[], datetime], clock: Clock, *, independent: bool, detail: str,
                 what: str) -> TimeReading | Absent:
    """A server's clock from the ``Date`` of one answer (``server_time``), measured against ``clock``;
    absent, with why, when the server does not answer.  ``Date`` has whole seconds: the server's clock
    was within [Date, Date + 1 s) somewhere in the round trip, whose middle is the host time."""
    t0, sent = clock.monotonic(), clock.now()
    try:
        server = server_time()
    except Exception as e:  # down or odd: the witness is absent, the sweep decides
        return Absent(name, f"no Date from {what}: {e}")
    rtt = max(0.0, clock.monotonic() - t0)
    return TimeReading(name, server + timedelta(seconds=0.5), sent + timedelta(seconds=rtt / 2),
                       uncertainty_s=0.5 + rtt / 2, independent=independent, detail=detail)


class SealTimeSource:
    """The newest seal's time: the present lies after it, and no later than
    ``span_s`` after it while the seal job keeps its schedule (health's own bound
    for a late seal: 2 x interval + grace)."""

    name = "newest_seal"

    def __init__(self, newest_created_ms: Callable[[], int | None], span_s: float) -> None:
        self.newest_created_ms = newest_created_ms
        self.span_s = span_s

    def read(self, clock: Clock) -> TimeReading | Absent:
        try:
            ms = self.newest_created_ms()
        except Exception as e:  # the index is down: no reading, the sweep decides on the others
            return Absent(self.name, f"seal table unreadable: {e}")
        if ms is None:
            return Absent(self.name, "no seal written yet")
        return TimeReading(self.name, from_ms(ms), clock.now(), uncertainty_s=1.0, independent=False,
                           span_s=self.span_s,
                           detail=f"written by this host's clock; the seal job runs at least every {self.span_s:.0f} s")


def read_all(sources: Sequence[TimeSource], clock: Clock) -> tuple[list[TimeReading], list[Absent]]:
    """Every source's reading; a source that raises anyway counts as absent."""
    readings: list[TimeReading] = []
    absent: list[Absent] = []
    for s in sources:
        try:
            r = s.read(clock)
        except Exception as e:  # a witness must never break the sweep open: it is just not there
            r = Absent(getattr(s, "name", type(s).__name__), f"error: {e}")
        (readings if isinstance(r, TimeReading) else absent).append(r)
    return readings, absent
