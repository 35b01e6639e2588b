"""Cameras that reset RTSP sessions on a period: told apart from chance interruptions (pure).

Some cameras end a session after a fixed time whatever the client does (a
session timeout enforced at half of what they advertise, a firmware watchdog):
every N seconds the recording has a gap of a second or so.  One such end looks
like any other ``stream_ended``; :class:`ResetDetector` sees the pattern when
:data:`STREAK` sessions in a row were ended by the camera after nearly the same
time, and reports it once per period (:class:`PeriodicReset`).  The worker
shows it in the camera's status, logs it once, and does what helps
(recorder.worker): the native client then sends keep-alives at a quarter of
the period; FFmpeg's client cannot be told to, so the status suggests the
native client.
"""

from __future__ import annotations

from dataclasses import dataclass

#: consecutive camera-ended sessions of nearly one length that make a pattern
STREAK = 3
#: sessions shorter than this are failures to start, not resets on a period
MIN_PERIOD_S = 5.0
#: "nearly the same": within this many seconds, or this fraction of the period
TOLERANCE_S = 2.0
TOLERANCE_FRACTION = 0.05


@dataclass(frozen=True)
class PeriodicReset:
    period_s: float
    sessions: int

    def message(self, client: str) -> str:
        p = f"{self.period_s:.0f}"
        if client == "native":
            help_zh, help_en = "已缩短保活间隔", f"keep-alives now go at least every {self.period_s / 4:.0f} s"
        else:
            help_zh, help_en = ("FFmpeg 客户端无法调整保活，建议使用内置客户端 (LABWITNESS_RTSP_CLIENT=native)",
                                "FFmpeg's client cannot send keep-alives sooner: use the native client "
                                "(LABWITNESS_RTSP_CLIENT=native)")
        return (f"摄像机约每 {p} 秒重置一次 RTSP 会话（每次录像中断约一秒），{help_zh} / the camera resets the RTSP "
                f"session about every {p} s ({self.sessions} sessions in a row; each reset is a short gap); {help_en}")


class ResetDetector:
    """Feed it each session's end; it answers a :class:`PeriodicReset` the first time a period shows."""

    def __init__(self) -> None:
        self._run: list[float] = []
        self.found: PeriodicReset | None = None

    def session_ended(self, duration_s: float, reason: str) -> PeriodicReset | None:
        """``duration_s``: from the session's first video to its end; ``reason``: the gap reason."""
        if reason != "stream_ended" or duration_s < MIN_PERIOD_S:
            self._run.clear()
            return None
        run = self._run
        if run and not _near(duration_s, sum(run) / len(run)):
            run.clear()
        run.append(duration_s)
        if len(run) < STREAK:
            return None
        del run[:-STREAK]
        period = sorted(run)[len(run) // 2]
        if self.found is not None and _near(period, self.found.period_s):
            return None  # already reported
        self.found = PeriodicReset(period, len(run))
        return self.found


def _near(a: float, b: float) -> bool:
    return abs(a - b) <= max(TOLERANCE_S, TOLERANCE_FRACTION * max(a, b))
