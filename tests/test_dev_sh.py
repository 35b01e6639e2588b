"""deploy/dev.sh, sourced for its functions: the demo installs only what it needs, and the apt
step waits for a package lock held by another process (as unattended-upgrades holds it on
a fresh Debian) instead of dying.  The lock test holds dpkg's real lock for a few seconds,
the way apt does (an fcntl lock), and runs `apt-get check`, which takes that lock and
installs nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DPKG_LOCK = Path("/var/lib/dpkg/lock-frontend")
HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)  # what apt and dpkg take
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def dev_sh(script: str, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"source deploy/dev.sh && {script}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


def test_the_demo_installs_only_what_it_needs_and_the_tests_get_everything_they_use():
    sets = {cmd: set(dev_sh(f"apt_packages {cmd}").stdout.split()) for cmd in ("demo", "test", "bench", "all")}
    assert "gir1.2-gst-rtsp-server-1.0" in sets["demo"] and "python3-gi" in sets["demo"]
    assert not sets["demo"] & {"chromium", "fonts-wqy-microhei", "ffmpeg"}
    assert sets["test"] == sets["demo"] | {"chromium", "fonts-wqy-microhei", "iproute2"}
    assert sets["bench"] == sets["demo"] | {"ffmpeg"}
    assert sets["all"] == sets["test"] | sets["bench"]
    # and each command asks for its own set
    script = (ROOT / "deploy" / "dev.sh").read_text()
    for cmd, group in (("demo", "demo"), ("test", "test"), ("bench", "bench"), ("setup", "all")):
        assert re.search(rf"^  {cmd}\)\s+setup {group}\b", script, re.M), cmd


@pytest.fixture
def held_dpkg_lock():
    """Hold dpkg's frontend lock in another process for ``seconds``; yields (start, pid)."""
    if not (DPKG_LOCK.exists() and os.access(DPKG_LOCK, os.W_OK)):
        pytest.skip(f"{DPKG_LOCK} is not writable here (root on Debian)")
    procs: list[subprocess.Popen] = []

    def hold(seconds: float) -> int:
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(DPKG_LOCK), str(seconds)], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p.pid

    yield hold
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_apt_waits_for_a_held_package_lock_and_says_so(held_dpkg_lock):
    pid = held_dpkg_lock(3.0)
    t0 = time.monotonic()
    r = dev_sh("apt_get check && echo checked", APT_LOCK_POLL_S="0.2", LABWITNESS_APT_LOCK_WAIT_S="60")
    waited = time.monotonic() - t0
    assert r.returncode == 0 and "checked" in r.stdout, r.stderr
    assert waited >= 2.0, waited  # it waited for the holder rather than failing at once
    assert f"pid {pid} (python" in r.stderr and "waiting up to 60s" in r.stderr and "lock is free" in r.stderr


@pytest.mark.slow
def test_apt_gives_up_after_its_wait_with_a_clear_message(held_dpkg_lock):
    pid = held_dpkg_lock(30.0)
    t0 = time.monotonic()
    r = dev_sh("apt_get check", APT_LOCK_POLL_S="0.2", LABWITNESS_APT_LOCK_WAIT_S="1")
    assert r.returncode != 0 and time.monotonic() - t0 < 15
    assert f"still held by pid {pid}" in r.stderr and "LABWITNESS_APT_LOCK_WAIT_S" in r.stderr
