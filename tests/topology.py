"""A whole labwitness cluster on one machine, each part in its own network namespace (tests/netns.py).

Nodes (each its own address on the topology's /24):

- ``db``: a throwaway PostgreSQL cluster (``pg_ctl`` as user postgres, as conftest's ``PgCluster``)
  listening on the namespace's address;
- ``s3-master``, ``s3-vol1..3``, ``s3-gw`` (filer and S3 gateway): the SeaweedFS cluster of
  ``storage.seaweed_cluster``, one rack per volume server, replication 010, with its lock-down;
- ``cams``: GStreamer's RTSP server (``simulator.rtsp``) with one live mount per camera;
- any number of labwitness nodes: ``labwitness serve --roles ROLES --node-id NAME`` on
  ``<node address>:8000``, every one on the same PostgreSQL and S3 and sharing one data directory
  for the installation's keys (signing, audit MAC, credentials: what ``labwitness init`` would copy
  to each machine), each with its own spool.

The test process (root namespace) is on the network too (``Topology(host=True)``): it talks to the
database, the API and S3 directly, and runs the CLI against the cluster.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conftest import PgCluster
from netns import Proc, Topology
from simulator.rtsp import Mount, RtspSimulator
from storage.seaweed import wait_s3_ready, weed_env
from storage.seaweed_cluster import (KINDS, ClusterLayout, ensure_cluster_secrets, node_command, wait_listening,
                                     with_hosts)

ROOT = Path(__file__).resolve().parents[1]
API_PORT = 8000


class NetnsPg(PgCluster):
    """``PgCluster`` started inside a namespace, listening on its address (reachable from the subnet)."""

    def __init__(self, topo: Topology, node: str) -> None:
        super().__init__()
        self.topo, self.node = topo, node
        self.host = topo.nodes[node].ip
        with open(self.dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {topo.subnet} trust\n")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://test@{self.host}:{self.port}/postgres"

    def start(self) -> None:
        self._run(["ip", "netns", "exec", self.topo.nodes[self.node].ns, "runuser", "-u", "postgres", "--",
                   str(self.BIN / "pg_ctl"), "-D", str(self.dir), "-w", "-l", str(self.root / "pg.log"), "-o",
                   f"-c listen_addresses={self.host} -p {self.port} -k {self.root} -c fsync=off "
                   "-c max_connections=300", "start"], as_root=True)

    def _run(self, args: list[str], as_root: bool = False) -> None:
        if as_root:  # `ip netns exec` needs root; it then drops to postgres itself (runuser in args)
            subprocess.run(args, check=True, capture_output=True, timeout=60)
        else:
            super()._run(args)


@dataclass
class StorageCluster:
    """The SeaweedFS cluster's components, each in the namespace named by ``placement``."""

    topo: Topology
    layout: ClusterLayout
    placement: dict[str, str]  # component name -> topology node
    procs: dict[str, Proc] = field(default_factory=dict)
    access_key: str = ""
    secret_key: str = ""

    @classmethod
    def build(cls, topo: Topology, base: Path) -> "StorageCluster":
        placement = {"master-1": "s3-master", "volume-1": "s3-vol1", "volume-2": "s3-vol2", "volume-3": "s3-vol3",
                     "filer": "s3-gw", "s3": "s3-gw"}
        for node in dict.fromkeys(placement.values()):
            if node not in topo.nodes:
                topo.add_node(node)
        layout = ClusterLayout.local(base, volume_size_limit_mb=64, volume_stop_grace_s=1)
        layout = with_hosts(layout, {name: topo.nodes[node].ip for name, node in placement.items()})
        return cls(topo, layout, placement)

    @property
    def endpoint(self) -> str:
        return self.layout.s3_endpoint

    def start(self, timeout: float = 60) -> "StorageCluster":
        creds = ensure_cluster_secrets(self.layout)
        self.access_key, self.secret_key = creds.access_key, creds.secret_key
        for kind in KINDS:
            for n in self.layout.of(kind):
                self.start_component(n.name, timeout)
        wait_s3_ready(self.endpoint, self.procs["s3"].popen, self.procs["s3"].stderr, timeout)
        return self

    def start_component(self, name: str, timeout: float = 60) -> Proc:
        n = self.layout.node(name)
        for d in (n.dir, n.dir / "data", n.dir / "meta"):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        proc = self.topo.popen(self.placement[name], node_command(self.layout, name), name=f"weed-{name}",
                               env=weed_env(), cwd=self.layout.secrets_dir)
        self.procs[name] = proc
        wait_listening(n.host, n.grpc, proc.popen, timeout)
        return proc

    def kill(self, name: str) -> None:
        self.topo.kill(self.procs.pop(name))


@dataclass
class LabCluster:
    """PostgreSQL, the storage cluster, the cameras and the labwitness nodes of one topology."""

    topo: Topology
    workdir: Path
    cameras: int = 4
    segment_seconds: float = 2.0
    extra_env: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, Proc] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    bucket: str = "topology-footage"

    def start_infrastructure(self) -> "LabCluster":
        t = self.topo
        t.add_node("db")
        t.add_node("cams")
        self.pg = NetnsPg(t, "db")
        self.pg.start()
        self.storage = StorageCluster.build(t, self.workdir / "store").start()
        mounts = {f"/cam{i + 1}": Mount.live(width=160, height=120, fps=10, key_int=10, bitrate_kbps=150,
                                             shared=True) for i in range(self.cameras)}
        self.rtsp = RtspSimulator(mounts, host=t.nodes["cams"].ip, workdir=self.workdir / "rtsp",
                                  python=str(t.python_wrapper("cams"))).start()
        self.data_dir = self.workdir / "data"  # shared: the installation's keys, as init would copy them
        self.credentials_key = __import__("cryptography.fernet", fromlist=["Fernet"]).Fernet.generate_key().decode()
        return self

    def stop_infrastructure(self) -> None:
        for proc in list(self.nodes.values()):
            self.topo.kill(proc)
        if getattr(self, "rtsp", None):
            self.rtsp.kill()
        if getattr(self, "pg", None):
            self.pg.destroy()

    # -- labwitness -----------------------------------------------------------------------------
    def env(self, node: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABWITNESS_")}
        env.update({
            "PYTHONPATH": str(ROOT),
            "LABWITNESS_DATABASE_URL": self.pg.url,
            "LABWITNESS_DATA_DIR": str(self.data_dir),
            "LABWITNESS_S3_ENDPOINT": self.storage.endpoint,
            "LABWITNESS_S3_ACCESS_KEY": self.storage.access_key,
            "LABWITNESS_S3_SECRET_KEY": self.storage.secret_key,
            "LABWITNESS_S3_BUCKET": self.bucket,
            "LABWITNESS_CREDENTIALS_KEY": self.credentials_key,
            "LABWITNESS_SEGMENT_SECONDS": str(self.segment_seconds),
            "LABWITNESS_RTSP_OPEN_TIMEOUT_S": "3", "LABWITNESS_RTSP_READ_TIMEOUT_S": "3",
            "LABWITNESS_BACKOFF_CAP_S": "2",
            "LABWITNESS_DISCOVERY_INTERFACES": "127.0.0.1",
        })
        if node is not None:
            env["LABWITNESS_SPOOL_DIR"] = str(self.workdir / "spool" / node)
        env.update(self.extra_env)
        return env

    def lw(self, args: list[str], timeout: float = 120, node: str | None = None) -> subprocess.CompletedProcess[str]:
        """``labwitness ARGS`` against the cluster, from the test's namespace (or inside ``node``)."""
        argv = [sys.executable, "-m", "api.cli", *args]
        if node is not None:
            argv = self.topo.argv(node, argv)
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def start_node(self, name: str, roles: str) -> Proc:
        if name not in self.topo.nodes:
            self.topo.add_node(name)
        host = self.topo.nodes[name].ip
        argv = [sys.executable, "-m", "api.cli", "serve", "--roles", roles, "--node-id", name,
                "--host", host, "--port", str(API_PORT)]
        proc = self.topo.popen(name, argv, name=f"lw-{name}", env=self.env(name), cwd=ROOT)
        self.nodes[name], self.roles[name] = proc, roles
        return proc

    def base_url(self, node: str) -> str:
        return f"http://{self.topo.nodes[node].ip}:{API_PORT}"

    def wait_up(self, name: str, timeout: float = 90) -> None:
        proc = self.nodes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise AssertionError(f"node {name} exited {proc.popen.returncode}:\n{proc.tail()}")
            try:
                if httpx.get(f"{self.base_url(name)}/healthz", timeout=2).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"node {name} not serving /healthz after {timeout}s:\n{proc.tail()}")

    def kill_node(self, name: str) -> None:
        self.topo.kill(self.nodes[name])

    def camera_url(self, i: int) -> str:
        return self.rtsp.url(f"/cam{i + 1}")

    def camera_ids(self) -> list[str]:
        return [f"topo-cam-{i + 1}" for i in range(self.cameras)]

    def register(self, area: str = "topo") -> str:
        """Area, cameras and an admin token through the CLI (before any node runs); the token."""
        steps = [["db", "upgrade"], ["area", "add", "--id", area, "--name", "拓扑测试区"]]
        steps += [["camera", "add", "--id", cam, "--url", self.camera_url(i), "--area", area]
                  for i, cam in enumerate(self.camera_ids())]
        steps.append(["key", "export", "--out", str(self.workdir / "lab.pub")])
        for args in steps:
            r = self.lw(args)
            assert r.returncode == 0, (args, r.stderr[-2000:])
        r = self.lw(["token", "create", "--name", f"topo-{secrets.token_hex(3)}", "--role", "admin"])
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout.strip().split()[-1]

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.tail(25)}" for n, p in self.nodes.items())


def copy_logs(topo: Topology, dest: Path) -> None:
    """Keep the nodes' logs beside a failed test's report (pytest's tmp dirs are kept)."""
    shutil.copytree(topo.workdir / "logs", dest, dirs_exist_ok=True)
