"""Network namespaces for topology tests: each node its own address, on one machine.

A :class:`Topology` is a private layer-2 network: a bridge in a namespace of its own, and one
namespace per node joined to it by a veth pair (``eth0`` inside the node, an address on a /24 picked
at random among 10.64-250.x.0 and clear of the host's routes).  With ``host=True`` the test process's
own (root) namespace is joined too, at ``.254``, so pytest can reach every node directly; the nodes
cannot reach anything else.

- :meth:`Topology.popen` runs a process inside a node (``ip netns exec``), its stdout/stderr in
  files under the topology's work directory; :meth:`Topology.kill` SIGKILLs it, and teardown kills
  whatever is still running in any of our namespaces (``ip netns pids``), ours or a daemon's.
- :meth:`Topology.cut` partitions two nodes from each other and nothing else: a blackhole route to
  the other's address in each (this kernel has no netfilter or tc classifiers, and installing
  iptables is not needed for it).  A node's sends to the other fail locally (a new connection gets
  ``EINVAL`` at once; an open one retransmits into the void), and the other's replies vanish.
  :meth:`Topology.heal` removes the routes.  :meth:`Topology.unplug`/``plug`` take a node's link
  down/up: cut off from everyone.
- Names: ``lwt-<pid>-<rand>-<node>``.  The pid is the test process's, so :func:`sweep_stale`
  removes leftovers of a run that was killed before its teardown (its pid is gone) and never
  touches a running one; only names with our prefix are considered.  The veth pairs are created
  directly inside their namespaces, so the only name in the root namespace is the host link's
  (``lwt<hex>h``), and deleting the bridge's namespace destroys it (a veth dies with its peer).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "lwt"


def available() -> str | None:
    """Why topology tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "需要 root 创建网络命名空间 / network namespaces need root"
    if shutil.which("ip") is None:
        return "缺少 ip 命令（iproute2） / the `ip` command (iproute2) is missing"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"ip netns 不可用 / `ip netns` does not work here: {probe.stderr.strip()}"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def _pids_in(ns: str) -> list[int]:
    r = ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []


def _destroy_namespace(ns: str) -> None:
    """Kill everything running in ``ns`` (a deleted namespace lives on while a process is in it), then delete it."""
    for _ in range(50):
        pids = _pids_in(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    ip("netns", "delete", ns, check=False)


def sweep_stale(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces of ours whose creating process is gone (a run killed before teardown)."""
    removed = []
    for ns in namespaces():
        parts = ns.split("-")
        if len(parts) < 4 or parts[0] != prefix or not parts[1].isdigit():
            continue
        if Path(f"/proc/{parts[1]}").exists():
            continue  # a live run's (or a reused pid's: then it waits for the next sweep)
        _destroy_namespace(ns)
        removed.append(ns)
    return removed


def host_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in ip("-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole", "prohibit", "throw"):
            word = line.split()[1]
        if word == "default":
            continue
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    return nets


def pick_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    rng = rng or random.SystemRandom()
    taken = host_networks()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randint(64, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free 10.x.y.0/24 for a topology")


@dataclass
class Node:
    name: str
    ns: str
    ip: str
    port_name: str  # its veth end in the bridge's namespace


@dataclass
class Proc:
    node: Node
    name: str
    popen: subprocess.Popen
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Topology:
    """One private network of namespaces; a context manager that removes it all on exit."""

    workdir: Path
    host: bool = True
    prefix: str = PREFIX
    subnet: ipaddress.IPv4Network = field(default_factory=pick_subnet)
    nodes: dict[str, Node] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    cuts: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.run_id = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.bridge_ns = f"{self.prefix}-{self.run_id}-br"
        self.host_ip: str | None = None
        self.host_link: str | None = None
        self._hosts = iter(self.subnet.hosts())

    # -- building -------------------------------------------------------------------------------
    def __enter__(self) -> "Topology":
        sweep_stale(self.prefix)
        try:
            ip("netns", "add", self.bridge_ns)
            ip("-n", self.bridge_ns, "link", "set", "lo", "up")
            ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            if self.host:
                self._attach_host()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _attach_host(self) -> None:
        link = f"{self.prefix}{secrets.token_hex(4)}h"  # the one name in the root namespace: 12 chars
        ip("link", "add", link, "type", "veth", "peer", "name", "phost", "netns", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "set", "phost", "master", "br0", "up")
        self.host_ip = str(self.subnet.network_address + 254)
        ip("addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", link)
        ip("link", "set", link, "up")
        self.host_link = link

    def add_node(self, name: str) -> Node:
        if name in self.nodes:
            raise ValueError(f"node {name} exists")
        ns = f"{self.prefix}-{self.run_id}-{name}"
        address = str(next(self._hosts))
        port = f"p{len(self.nodes)}"
        ip("netns", "add", ns)
        node = Node(name, ns, address, port)
        self.nodes[name] = node
        # both ends made inside their namespaces: nothing is named in the root namespace
        ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        return node

    # -- processes ------------------------------------------------------------------------------
    def argv(self, node: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.nodes[node].ns, *argv]

    def popen(self, node: str, argv: list[str], *, name: str | None = None, env: dict | None = None,
              cwd: Path | None = None) -> Proc:
        """Start ``argv`` inside ``node``; stdout/stderr to ``logs/<name>.out|err`` (appended across restarts)."""
        name = name or Path(argv[0]).name
        out, err = self.workdir / "logs" / f"{name}.out", self.workdir / "logs" / f"{name}.err"
        with open(out, "ab") as o, open(err, "ab") as e:
            # `ip netns exec` execs the command: the pid is the process's own, so kill() hits it
            p = subprocess.Popen(self.argv(node, argv), stdin=subprocess.DEVNULL, stdout=o, stderr=e, env=env,
                                 cwd=cwd, start_new_session=True)
        proc = Proc(self.nodes[node], name, p, out, err)
        self.procs.append(proc)
        return proc

    def run(self, node: str, argv: list[str], *, timeout: float = 60, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(node, argv), capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise RuntimeError(f"{node}: {' '.join(argv)} exited {r.returncode}: {r.stderr[-2000:]}")
        return r

    def python_wrapper(self, node: str, python: str = "/usr/bin/python3") -> Path:
        """An executable that runs ``python`` inside ``node``: for code that takes an interpreter path
        (``simulator.rtsp.RtspSimulator(python=...)``)."""
        path = self.workdir / f"python-in-{node}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.nodes[node].ns} {python} "$@"\n')
        path.chmod(0o755)
        return path

    def kill(self, proc: Proc, sig: signal.Signals = signal.SIGKILL, timeout: float = 15) -> None:
        if proc.alive():
            proc.popen.send_signal(sig)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(10)

    # -- faults ---------------------------------------------------------------------------------
    def cut(self, a: str, b: str) -> None:
        """Partition ``a`` from ``b`` (both directions); every other path stays up."""
        na, nb = self.nodes[a], self.nodes[b]
        ip("-n", na.ns, "route", "add", "blackhole", f"{nb.ip}/32")
        ip("-n", nb.ns, "route", "add", "blackhole", f"{na.ip}/32")
        self.cuts.add((a, b))

    def heal(self, a: str, b: str) -> None:
        na, nb = self.nodes[a], self.nodes[b]
        ip("-n", na.ns, "route", "del", "blackhole", f"{nb.ip}/32", check=False)
        ip("-n", nb.ns, "route", "del", "blackhole", f"{na.ip}/32", check=False)
        self.cuts.discard((a, b))

    def unplug(self, node: str) -> None:
        ip("-n", self.bridge_ns, "link", "set", self.nodes[node].port_name, "down")

    def plug(self, node: str) -> None:
        ip("-n", self.bridge_ns, "link", "set", self.nodes[node].port_name, "up")

    # -- teardown -------------------------------------------------------------------------------
    def own_namespaces(self) -> list[str]:
        mine = f"{self.prefix}-{self.run_id}-"
        return [ns for ns in namespaces() if ns.startswith(mine)]

    def close(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.popen.kill()
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # node namespaces first (daemons such as postgres or weed children die with them), the bridge last
        for ns in sorted(self.own_namespaces(), key=lambda n: n == self.bridge_ns):
            _destroy_namespace(ns)
        if getattr(self, "host_link", None):
            # the kernel frees a deleted namespace's devices later, in a work queue: remove ours now
            ip("link", "delete", self.host_link, check=False)
        self.nodes.clear()

    def describe(self) -> str:
        return json.dumps({"subnet": str(self.subnet), "host": self.host_ip,
                           "nodes": {n.name: {"ns": n.ns, "ip": n.ip} for n in self.nodes.values()}}, indent=2)
