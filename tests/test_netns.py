"""The topology harness itself (tests/netns.py): nodes talk over the bridge, a cut cuts exactly the
pair it names, teardown and the sweeper leave nothing of ours behind."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

import netns
from netns import Topology, ip

pytestmark = [pytest.mark.slow,  # needs root and namespaces: not for the fast lane
              pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))]

CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(1.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("ok")
except OSError as e:
    print(type(e).__name__)
"""


def reach(topo: Topology, src: str, dst: str, port: int) -> bool:
    out = topo.run(src, ["/usr/bin/python3", "-c", CONNECT, topo.nodes[dst].ip, str(port)]).stdout.strip()
    return out == "ok"


def serve(topo: Topology, node: str, port: int):
    proc = topo.popen(node, ["/usr/bin/python3", "-m", "http.server", "--bind", topo.nodes[node].ip, str(port)],
                      name=f"http-{node}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = topo.run(node, ["/usr/bin/python3", "-c", CONNECT, topo.nodes[node].ip, str(port)])
        if r.stdout.strip() == "ok":
            return proc
        time.sleep(0.1)
    raise AssertionError(proc.tail())


def test_nodes_talk_over_the_bridge_and_a_cut_cuts_exactly_that_pair(tmp_path):
    with Topology(tmp_path) as topo:
        for n in ("a", "b", "c"):
            topo.add_node(n)
        assert len({n.ip for n in topo.nodes.values()}) == 3
        assert all(ipaddr in topo.subnet for ipaddr in (__import__("ipaddress").ip_address(n.ip) for n in topo.nodes.values()))
        for n in ("a", "b", "c"):
            serve(topo, n, 8080)
        assert reach(topo, "a", "b", 8080) and reach(topo, "b", "a", 8080) and reach(topo, "a", "c", 8080)
        # the host (pytest's namespace) is on the network too
        with socket.create_connection((topo.nodes["b"].ip, 8080), timeout=2):
            pass

        topo.cut("a", "b")
        assert not reach(topo, "a", "b", 8080) and not reach(topo, "b", "a", 8080)
        assert reach(topo, "a", "c", 8080) and reach(topo, "c", "b", 8080) and reach(topo, "b", "c", 8080)
        with socket.create_connection((topo.nodes["a"].ip, 8080), timeout=2):
            pass  # the host still reaches the cut node
        topo.heal("a", "b")
        assert reach(topo, "a", "b", 8080) and reach(topo, "b", "a", 8080)

        topo.unplug("c")
        assert not reach(topo, "a", "c", 8080) and not reach(topo, "c", "b", 8080)
        assert reach(topo, "a", "b", 8080)
        topo.plug("c")
        assert reach(topo, "a", "c", 8080)


def test_an_open_connection_goes_silent_across_a_cut(tmp_path):
    """What a database client sees when partitioned: no reset, no answer."""
    with Topology(tmp_path) as topo:
        topo.add_node("a")
        topo.add_node("b")
        serve(topo, "b", 8080)
        with socket.create_connection((topo.nodes["b"].ip, 8080), timeout=2):
            pass
        script = """
import socket, sys, time, subprocess
s = socket.create_connection((sys.argv[1], 8080), timeout=2)
print("connected", flush=True)
input()                      # the test cuts here
s.settimeout(2)
s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
try:
    print("answer" if s.recv(100) else "closed")
except socket.timeout:
    print("silent")
"""
        p = subprocess.Popen(topo.argv("a", ["/usr/bin/python3", "-c", script, topo.nodes["b"].ip]),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "connected"
        topo.cut("a", "b")
        out, _ = p.communicate("\n", timeout=20)
        assert out.strip() == "silent"


def test_teardown_kills_processes_and_removes_every_namespace_even_on_failure(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with Topology(tmp_path) as topo:
            topo.add_node("a")
            topo.add_node("b")
            proc = topo.popen("a", ["sleep", "300"])
            # a daemon that left our process tree: found through `ip netns pids`
            subprocess.run(topo.argv("b", ["sh", "-c", "setsid sleep 301 >/dev/null 2>&1 &"]), check=True)
            time.sleep(0.3)
            names, host_link = topo.own_namespaces(), topo.host_link
            assert len(names) == 3 and all(n.startswith(f"lwt-{os.getpid()}-") for n in names)
            daemons = [int(p) for p in ip("netns", "pids", topo.nodes["b"].ns).stdout.split()]
            assert daemons
            raise RuntimeError("boom")
    assert proc.popen.poll() is not None
    assert not any(os.path.exists(f"/proc/{pid}") and "sleep" in open(f"/proc/{pid}/cmdline").read() for pid in daemons)
    assert not set(names) & set(netns.namespaces())
    assert host_link not in ip("-o", "link").stdout


def test_sweeper_removes_only_dead_runs_namespaces(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"lwt-{dead.pid}-beef-x"
    live = f"lwt-{os.getpid()}-beef-y"
    foreign = f"other-{dead.pid}-beef-z"
    try:
        for n in (stale, live, foreign):
            ip("netns", "add", n)
        subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "300"], start_new_session=True)
        time.sleep(0.2)
        removed = netns.sweep_stale()
        have = set(netns.namespaces())
        assert stale in removed and stale not in have
        assert live in have and foreign in have
    finally:
        for n in (stale, live, foreign):
            ip("netns", "delete", n, check=False)


def test_subnets_avoid_the_hosts_routes():
    import ipaddress
    import random

    taken = netns.host_networks()
    for seed in range(20):
        net = netns.pick_subnet(random.Random(seed))
        assert net.prefixlen == 24 and net.subnet_of(ipaddress.ip_network("10.0.0.0/8"))
        assert not any(net.overlaps(t) for t in taken)
