"""Time the sweep can trust before deleting: witness readings and the rule on them (pure).

The sweep's *now* comes from the host clock, and so does the embedded store's
(same host): a clock pushed forward a year would make both agree that a year's
footage has expired.  Before deleting anything the sweep therefore asks
**witnesses** that do not share the host clock (``docs/retention.md``, step 2)
and :func:`judge` decides on their readings:

1. Every reading, independent or not, must agree with the host clock within the
   bound (``LABWITNESS_SWEEP_MAX_CLOCK_SKEW_S``) widened by its own uncertainty;
   one that does not refuses the sweep (``clock_disagrees``, naming each witness
   and its offset).  Disagreement means some clock is wrong, and deleting is the
   one step that cannot be undone.
2. At least one reading must be **independent** of the host clock *and* able to
   catch a clock running ahead (bounded above); otherwise ``no_time_witness``.
   The store's ``Date`` is independent only for an external endpoint, never for
   the embedded store (it reads the host clock).  A reading that bounds time from
   below only (the newest seal whose job is not known to be healthy) is checked
   under rule 1 but does not satisfy rule 2.
3. Cameras count as one witness, the **median** of their clock offsets
   (:func:`combine_cameras`): one camera whose clock was reset to 2000 neither
   blocks nor fools the sweep; a strict majority of the cameras that answered
   must agree with the median within the bound, else the cameras are no witness.

A :class:`TimeSource` is anything that reads one witness (cameras over ONVIF,
the store's ``Date``, later the newest seal or a seal witness's ``Date``); an
unreachable source returns :class:`Absent` with a reason, it never raises.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, Sequence

from labwitness.clock import Clock

TIME_REFUSALS = ("clock_disagrees", "no_time_witness")


@dataclass(frozen=True)
class TimeReading:
    """What one witness said the time was, and what the host clock said then.

    The true time at ``host_time`` lies in
    ``[witness_time - uncertainty_s, witness_time + span_s + uncertainty_s]``:
    ``span_s`` is 0 for a clock read now, the longest a healthy job leaves between
    two seals for the newest seal's time, and None when nothing bounds it from
    above (a lower bound only)."""

    source: str
    witness_time: datetime
    host_time: datetime
    uncertainty_s: float = 0.0
    independent: bool = True
    span_s: float | None = 0.0
    detail: str = ""

    @property
    def offset_s(self) -> float:
        """Witness minus host clock, seconds (positive: the witness is ahead)."""
        return (self.witness_time - self.host_time).total_seconds()

    def excess_s(self) -> float:
        """How far, in seconds, the host clock lies outside the interval the witness
        allows: positive when the host is behind it, negative when ahead, 0 inside."""
        low = self.witness_time - timedelta(seconds=self.uncertainty_s)
        if self.host_time < low:
            return (low - self.host_time).total_seconds()
        if self.span_s is None:
            return 0.0
        high = self.witness_time + timedelta(seconds=self.span_s + self.uncertainty_s)
        if self.host_time > high:
            return -(self.host_time - high).total_seconds()
        return 0.0

    def to_json(self) -> dict:
        return {"source": self.source, "witness_time": self.witness_time.isoformat(),
                "host_time": self.host_time.isoformat(), "offset_s": round(self.offset_s, 3),
                "uncertainty_s": round(self.uncertainty_s, 3), "independent": self.independent,
                "span_s": self.span_s, "detail": self.detail}


@dataclass(frozen=True)
class Absent:
    """A witness that gave no reading this time, and why (down, not configured, ...)."""

    source: str
    reason: str

    def to_json(self) -> dict:
        return {"source": self.source, "absent": self.reason}


class TimeSource(Protocol):
    """One witness of the time.  ``read`` measures against ``clock`` (the sweep's: the
    host time of a reading must be taken when the witness answers, not before a
    round trip of seconds) and returns :class:`Absent` instead of raising."""

    name: str

    def read(self, clock: Clock) -> TimeReading | Absent: ...


@dataclass(frozen=True)
class TimeVerdict:
    ok: bool
    reason: str  # "ok", "clock_disagrees" or "no_time_witness"
    message: str  # zh-CN / English, naming the witnesses
    trusted: tuple[str, ...] = ()  # the independent witnesses that agreed


def _fmt_offset(s: float) -> str:
    a = abs(s)
    if a >= 86400:
        return f"{s / 86400:+.1f} d ({s:+.0f} s)"
    if a >= 3600:
        return f"{s / 3600:+.1f} h ({s:+.0f} s)"
    return f"{s:+.1f} s"


def _kind(r: TimeReading) -> str:
    return "independent" if r.independent else "same host clock"


def judge(host_now: datetime, readings: Sequence[TimeReading], absent: Sequence[Absent], max_skew_s: float) -> TimeVerdict:
    """The rule of the module docstring: ok, ``clock_disagrees`` or ``no_time_witness``."""
    off = [r for r in readings if abs(r.excess_s()) > max_skew_s]
    if off:
        named = "; ".join(f"{r.source} ({_kind(r)}) {_fmt_offset(r.offset_s)}"
                          + (f" [{r.detail}]" if r.detail else "") for r in off)
        agree = ", ".join(f"{r.source} {_fmt_offset(r.offset_s)}" for r in readings if r not in off) or "none"
        return TimeVerdict(False, "clock_disagrees",
                           f"本机时钟与时间见证不一致，拒绝清理：{named} / this host's clock ({host_now.isoformat()}) "
                           f"disagrees with its time witnesses by more than {max_skew_s:.0f} s: {named} "
                           f"(agreeing: {agree}); refusing to delete anything. Fix NTP on this host (or the "
                           f"witness's clock) and run the sweep again")
    trusted = tuple(r.source for r in readings if r.independent and r.span_s is not None)
    if not trusted:
        seen = [f"{r.source}: {'same host clock' if not r.independent else 'lower bound only'}"
                for r in readings] + [f"{a.source}: {a.reason}" for a in absent]
        listed = "; ".join(seen) or "no witness configured"
        return TimeVerdict(False, "no_time_witness",
                           f"没有独立于本机时钟的时间见证，拒绝清理（{listed}） / no time witness independent of this "
                           f"host's clock answered ({listed}); refusing to delete anything. Give enabled cameras "
                           f"their ONVIF address (register them from discovery), or use an external S3 store")
    return TimeVerdict(True, "ok", "", trusted)


@dataclass(frozen=True)
class CameraClock:
    """One camera's clock as read over ONVIF: camera minus host clock, seconds."""

    camera_id: str
    offset_s: float
    uncertainty_s: float = 0.5


def combine_cameras(clocks: Sequence[CameraClock], failed: Sequence[tuple[str, str]], host_time: datetime,
                    agree_within_s: float, *, source: str = "cameras") -> TimeReading | Absent:
    """The cameras as one witness: the median of their offsets, when a strict majority
    of the cameras that answered lie within ``agree_within_s`` of it (rule 3).
    ``failed``: (camera, why) of the cameras asked that did not answer."""
    down = "; ".join(f"{c} {why}" for c, why in failed)
    if not clocks:
        return Absent(source, f"no camera answered ({down})" if down else "no enabled camera has an ONVIF address")
    median = statistics.median(c.offset_s for c in clocks)
    agree = [c for c in clocks if abs(c.offset_s - median) <= agree_within_s + c.uncertainty_s]
    listed = ", ".join(f"{c.camera_id} {_fmt_offset(c.offset_s)}" for c in clocks) + (f"; no answer: {down}" if down else "")
    if 2 * len(agree) <= len(clocks):
        return Absent(source, f"camera clocks disagree among themselves ({listed})")
    return TimeReading(source, host_time + timedelta(seconds=median), host_time,
                       uncertainty_s=max(c.uncertainty_s for c in agree), independent=True,
                       detail=f"median of {len(clocks)}, {len(agree)} agree: {listed}")

