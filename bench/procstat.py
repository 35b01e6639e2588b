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
    """Share of the whole machine (all cores) that was busy between start and stop."""

    def __init__(self) -> None:
        self.b0, self.t0 = system_busy()
        self.share: float | None = None

    def stop(self) -> float:
        b1, t1 = system_busy()
        self.share = (b1 - self.b0) / max(1, t1 - self.t0)
        return self.share


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
