"""A SeaweedFS cluster with Object Lock, locked down like the embedded store (issue 16 §2).

Masters (1, or 3 with Raft), volume servers (three or more, each its own failure domain), one filer
and one S3 gateway, each a separate ``weed`` process that can run on its own machine and address.
A :class:`ClusterLayout` names every component (host, ports, data directory; a volume server's
rack); :func:`node_command` gives the command line of one component, so a systemd unit, the
``labwitness store-node`` command or a test can start it alone; :class:`SeaweedCluster` starts
them all on one host (tests, a one-machine trial).

Replication ``010``: every volume keeps two copies on volume servers of two *different racks*, and
each volume server is given its own rack (its machine).  One volume server can die: each object
still has a copy on a living one, the master stops writing to volumes that lost a copy and grows
new ones on the two that remain, so writes go on.  ``001`` (second copy on another server of the
same rack) would do the same only while every server is in one rack; once an operator gives two
volume servers on one machine the same rack, ``001`` may put both copies on that machine, ``010``
never does.  Two copies, not three: a second failure before the first server is back loses the
volumes that had both copies on those two; the docs say so (docs/storage-cluster.md).

The lock-down is the embedded store's, shared rather than copied (:mod:`storage.seaweed`,
:mod:`storage.seaweed_secrets`): one secrets directory per installation -- the S3 identity, the
JWT keys the volume servers demand, gRPC mutual TLS with the installation's own CA -- which every
component runs in (weed reads ``./security.toml``); master and filer HTTP off; S3 takes only the
generated identity, no IAM API.  On separate machines the secrets directory is copied, 0700, to
the same path on each (its ``security.toml`` names the certificate files by absolute path).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from labwitness.errors import ConfigError, StorageUnavailableError
from labwitness.private_fs import private_dir, write_atomic
from storage.seaweed import (GRPC_OFFSET, HTTP_OFF, StartedCredentials, pick_ports, s3_lockdown_flags, spawn_weed, terminate,
                             wait_s3_ready, weed_binary)
from storage.seaweed_secrets import S3Credentials, ensure_credentials, ensure_security

log = logging.getLogger(__name__)

Kind = Literal["master", "volume", "filer", "s3"]
KINDS: tuple[Kind, ...] = ("master", "volume", "filer", "s3")
REPLICATIONS = ("010", "001")
LAYOUT_FILE = "cluster.json"


@dataclass(frozen=True)
class Node:
    """One component: where it listens (``host`` is both advertised and bound) and keeps its data."""

    name: str
    kind: Kind
    host: str
    port: int
    dir: Path
    grpc_port: int = 0  # 0: port + 10000, weed's default
    rack: str = ""  # volume servers: the failure domain (its machine); replication 010 spans racks

    @property
    def grpc(self) -> int:
        return self.grpc_port or self.port + GRPC_OFFSET

    @property
    def address(self) -> str:
        """weed's server address with its gRPC port: ``host:port.grpc``."""
        return f"{self.host}:{self.port}.{self.grpc}"


@dataclass(frozen=True)
class ClusterLayout:
    """Every component of one cluster, and the secrets directory they all run in."""

    secrets_dir: Path
    nodes: tuple[Node, ...]
    replication: str = "010"
    volume_size_limit_mb: int = 30000  # weed's default: volumes of 30 GB, a new one when full
    volume_stop_grace_s: int = 10  # a volume server's pause between leaving the master and exiting
    data_center: str = "dc1"

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        problems = []
        if len(set(names)) != len(names):
            problems.append(f"duplicate component names {names}")
        if self.replication not in REPLICATIONS:
            problems.append(f"replication {self.replication!r} is not one of {REPLICATIONS}")
        if len(self.masters) not in (1, 3):
            problems.append(f"{len(self.masters)} masters: use 1, or 3 for Raft")
        if len(self.volumes) < 3:
            problems.append(f"{len(self.volumes)} volume servers: at least 3, so one can fail")
        if self.replication == "010" and len({v.rack for v in self.volumes}) < 3:
            problems.append("replication 010 needs the volume servers on at least 3 racks (one each)")
        if len([n for n in self.nodes if n.kind == "filer"]) != 1 or len([n for n in self.nodes if n.kind == "s3"]) != 1:
            problems.append("exactly one filer and one S3 gateway")
        if problems:
            raise ConfigError("对象存储集群布局无效 / invalid storage cluster layout: " + "; ".join(problems))

    def of(self, kind: Kind) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == kind)

    @property
    def masters(self) -> tuple[Node, ...]:
        return self.of("master")

    @property
    def volumes(self) -> tuple[Node, ...]:
        return self.of("volume")

    @property
    def filer(self) -> Node:
        return self.of("filer")[0]

    @property
    def s3(self) -> Node:
        return self.of("s3")[0]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(f"集群中没有组件 {name} / no component {name!r} in the storage cluster "
                          f"(have: {', '.join(n.name for n in self.nodes)})")

    @property
    def s3_endpoint(self) -> str:
        """What the service's ``LABWITNESS_S3_ENDPOINT`` is set to."""
        return f"http://{self.s3.host}:{self.s3.port}"

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.host for n in self.nodes))

    # -- a layout file, the same on every machine ------------------------------------------------
    def to_json(self) -> str:
        d = asdict(self)
        d["secrets_dir"] = str(self.secrets_dir)
        d["nodes"] = [{**asdict(n), "dir": str(n.dir)} for n in self.nodes]
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ClusterLayout":
        try:
            d = json.loads(text)
            nodes = tuple(Node(**{**n, "dir": Path(n["dir"])}) for n in d.pop("nodes"))
            return cls(secrets_dir=Path(d.pop("secrets_dir")), nodes=nodes, **d)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"对象存储集群布局文件无法读取 / the storage cluster layout is unreadable: {e}") from e

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> "ClusterLayout":
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"找不到对象存储集群布局 / cannot read the storage cluster layout {path}: {e}") from e

    @classmethod
    def spread(cls, base: Path, secrets_dir: Path, *, masters: list[str], volumes: list[str], filer: str, s3: str,
               replication: str = "010", **kw) -> "ClusterLayout":
        """Components on the given hosts with weed's usual ports (master 9333, volume 8080, filer 8888,
        S3 8333; +1 for each further one of a kind on the same host), data under ``base`` on each
        host.  A volume server's rack is its host: two on one machine share it, so replication 010
        never keeps both copies of a volume on one machine."""
        defaults = {"master": 9333, "volume": 8080, "filer": 8888, "s3": 8333}
        taken: dict[tuple[str, str], int] = {}
        nodes = []
        for kind, hosts in (("master", masters), ("volume", volumes), ("filer", [filer]), ("s3", [s3])):
            for i, host in enumerate(hosts):
                name = kind if kind in ("filer", "s3") else f"{kind}-{i + 1}"
                k = taken[(host, kind)] = taken.get((host, kind), -1) + 1
                rack = f"rack-{host}" if kind == "volume" else ""
                nodes.append(Node(name, kind, host, defaults[kind] + k, Path(base) / name, rack=rack))  # type: ignore[arg-type]
        return cls(Path(secrets_dir), tuple(nodes), replication=replication, **kw)

    @classmethod
    def local(cls, base: Path, *, masters: int = 1, volumes: int = 3, host: str = "127.0.0.1",
              replication: str = "010", **kw) -> "ClusterLayout":
        """Every component on ``host`` with free ports, directories under ``base``, one rack each."""
        base = Path(base)
        kinds: list[tuple[str, Kind]] = ([(f"master-{i + 1}", "master") for i in range(masters)]
                                         + [(f"volume-{i + 1}", "volume") for i in range(volumes)]
                                         + [("filer", "filer"), ("s3", "s3")])
        ports = pick_ports(len(kinds))
        nodes = tuple(Node(name, kind, host, port, base / name, rack=f"rack-{name}" if kind == "volume" else "")
                      for (name, kind), port in zip(kinds, ports))
        return cls(base / "secrets", nodes, replication=replication, **kw)


def ensure_cluster_secrets(layout: ClusterLayout, given: S3Credentials | None = None) -> S3Credentials:
    """The cluster's S3 identity, JWT keys and certificates in ``layout.secrets_dir``, made once."""
    creds = ensure_credentials(layout.secrets_dir, given)
    ensure_security(layout.secrets_dir, layout.hosts)
    return creds


def node_command(layout: ClusterLayout, name: str, weed: str | None = None) -> list[str]:
    """The command line of component ``name``; run it with the secrets directory as working directory."""
    n = layout.node(name)
    masters = ",".join(m.address for m in layout.masters)
    common = [weed or weed_binary(), n.kind, f"-ip={n.host}", f"-ip.bind={n.host}", f"-port={n.port}",
              f"-port.grpc={n.grpc}"]
    if n.kind == "master":
        peers = "none" if len(layout.masters) == 1 else masters
        return [*common, f"-mdir={n.dir / 'meta'}", f"-peers={peers}", f"-defaultReplication={layout.replication}",
                f"-volumeSizeLimitMB={layout.volume_size_limit_mb}", "-telemetry=false", HTTP_OFF]
    if n.kind == "volume":
        # the volume server's HTTP stays on (S3 and the filer fetch chunks there): JWT-signed requests only
        return [*common, f"-dir={n.dir / 'data'}", "-max=0", f"-master={masters}", f"-rack={n.rack}",
                f"-dataCenter={layout.data_center}", f"-preStopSeconds={layout.volume_stop_grace_s}"]
    if n.kind == "filer":
        return [*common, f"-master={masters}", f"-defaultStoreDir={n.dir / 'meta'}",
                f"-defaultReplicaPlacement={layout.replication}", f"-localSocket={n.dir / 'filer.sock'}", HTTP_OFF]
    return [weed or weed_binary(), "s3", f"-ip={n.host}", f"-ip.bind={n.host}", f"-port={n.port}",
            f"-port.grpc={n.grpc}", f"-filer={layout.filer.address}", f"-localSocket={n.dir / 's3.sock'}",
            *s3_lockdown_flags(layout.secrets_dir)]


def prepare_node(layout: ClusterLayout, name: str) -> list[str]:
    """Check the secrets are on this host, make the component's directories (0700); its command line."""
    n = layout.node(name)
    if not (layout.secrets_dir / "security.toml").is_file():
        raise ConfigError(f"对象存储集群密钥目录缺少 security.toml / {layout.secrets_dir} has no security.toml: run "
                          "`labwitness store-node init` and copy the secrets directory to this host")
    private_dir(n.dir)
    if n.kind != "s3":
        private_dir(n.dir / ("data" if n.kind == "volume" else "meta"))
    return node_command(layout, name)


def start_node(layout: ClusterLayout, name: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start component ``name`` (secrets must exist: :func:`ensure_cluster_secrets`); its log is ``DIR/weed.log``.

    ``prefix`` goes before weed's command line, e.g. ``("ip", "netns", "exec", "ns1")`` to run it in a
    network namespace holding its address (that command execs weed: the process is weed's)."""
    args = prepare_node(layout, name)
    return spawn_weed([*prefix, *args], cwd=layout.secrets_dir, log_path=layout.node(name).dir / "weed.log")


def wait_listening(host: str, port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StorageUnavailableError(f"weed exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise StorageUnavailableError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class SeaweedCluster(StartedCredentials):
    """Every component of ``layout`` started on this host, each its own process (tests, a trial)."""

    _what = "storage cluster"

    layout: ClusterLayout
    given: S3Credentials | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    credentials: S3Credentials | None = None
    #: per component, what goes before its command line (see :func:`start_node`)
    prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def local(cls, base: Path, given: S3Credentials | None = None, **kw) -> "SeaweedCluster":
        return cls(ClusterLayout.local(base, **kw), given)

    @property
    def endpoint(self) -> str:
        return self.layout.s3_endpoint

    def start(self, timeout: float = 60.0) -> "SeaweedCluster":
        self.credentials = ensure_cluster_secrets(self.layout, self.given)
        try:
            for kind in KINDS:  # masters first: the others register with them
                for n in self.layout.of(kind):
                    self.start_node(n.name, timeout)
            wait_s3_ready(self.endpoint, self.procs[self.layout.s3.name], self.layout.s3.dir / "weed.log", timeout)
        except Exception:
            self.stop()
            raise
        log.info("SeaweedFS cluster S3 at %s (%d masters, %d volume servers, replication %s)", self.endpoint,
                 len(self.layout.masters), len(self.layout.volumes), self.layout.replication)
        return self

    def start_node(self, name: str, timeout: float = 30.0) -> None:
        n = self.layout.node(name)
        self.procs[name] = proc = start_node(self.layout, name, self.prefixes.get(name, ()))
        wait_listening(n.host, n.grpc, proc, timeout)

    def kill(self, name: str, sig: int = 9) -> None:
        """Fault injection: signal one component (SIGKILL by default) and reap it."""
        import os

        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(30)

    def stop(self) -> None:
        """SIGTERM to every component at once, SIGKILL to the late: the volume servers take their grace,
        the filer up to 15 s (weed's gRPC shutdown); by then everything is on disk, so it is not waited for."""
        import os
        import signal

        procs, self.procs = list(self.procs.values()), {}
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.layout.volume_stop_grace_s + 4.0
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                terminate(proc, timeout=0.1)

    def __enter__(self) -> "SeaweedCluster":
        return self if self.procs else self.start()  # ``with SeaweedCluster(...).start() as c`` starts it once

    def __exit__(self, *exc) -> None:
        self.stop()


def with_hosts(layout: ClusterLayout, hosts: dict[str, str]) -> ClusterLayout:
    """``layout`` with some components moved to other addresses (``{name: host}``), e.g. into namespaces."""
    return replace(layout, nodes=tuple(replace(n, host=hosts.get(n.name, n.host)) for n in layout.nodes))
