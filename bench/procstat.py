"""CPU accounting for the benchmark's processes (Linux /proc and wait4)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int | None) -> float:
    """utime+stime of a live process (all its threads), in seconds; 0 if gone."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _TICK


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


class BusyMeter:
    """How busy the whole machine (all cores) was between start and stop.

    ``other_cores(ours)`` is the load that the benchmark did not cause (other
    users of the machine): busy CPU seconds minus the benchmark's own, per
    second of wall time.  A run with much of it is not a clean measurement.
    """

    def __init__(self) -> None:
        self.b0, self.t0 = system_busy()
        self.w0 = time.monotonic()
        self.self0 = _self_cpu()
        self.share: float | None = None
        self.busy_s = self.wall_s = 0.0

    def stop(self) -> float:
        b1, t1 = system_busy()
        self.share = (b1 - self.b0) / max(1, t1 - self.t0)
        self.busy_s = (b1 - self.b0) / _TICK
        self.wall_s = time.monotonic() - self.w0
        self.self_s = _self_cpu() - self.self0
        return self.share

    def other_cores(self, ours_s: float) -> float:
        return max(0.0, self.busy_s - ours_s - self.self_s) / max(1e-9, self.wall_s)


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Reaped:
    returncode: int
    cpu_s: float  # user + system of the process and its reaped children
    maxrss_kb: int
    user_s: float = 0.0
    sys_s: float = 0.0


def reap(p: subprocess.Popen, timeout: float) -> Reaped:
    """Wait for ``p`` with wait4 so its exact CPU use is known; SIGKILL after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return Reaped(p.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, ru.ru_utime, ru.ru_stime)
        if time.monotonic() > deadline:
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 30
        time.sleep(0.05)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))
    return v[k]
