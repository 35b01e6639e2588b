"""The SeaweedFS cluster (storage/seaweed_cluster.py) keeps the embedded store's guarantees (issue 16 §2).

A real cluster on loopback: one master, three volume servers (one rack each, replication 010),
a filer and an S3 gateway, each its own ``weed`` process, started with its own generated secrets.
Footage goes in through the service's client (``S3ObjectStore``).  Then: the service's credentials
cannot delete, overwrite or shorten it; a volume server killed with SIGKILL leaves every object
readable byte-identical and writes with locks going on; restarted, it rejoins (with another one
dead, writes need it: replication 010 puts the two copies on two live racks); and the lock-down
attacks of tests/test_store_lockdown.py, from tests/weed_attacks.py, fail on every port and
socket of every process of the cluster.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention

from labwitness.errors import ConfigError
from storage.s3 import S3ObjectStore
from storage.seaweed_cluster import ClusterLayout, SeaweedCluster, node_command
from weed_attacks import (BUCKET, FAMILIES, Target, Weed, authorized_shell, chunk_bytes, chunk_fids, footage_damage,
                          listening, store_segment)

pytestmark = pytest.mark.slow


def _cluster(base: Path) -> SeaweedCluster:
    # small volumes (the master grows several per collection) and a short volume stop grace: a test
    return SeaweedCluster.local(base, volume_size_limit_mb=64, volume_stop_grace_s=1).start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster holding several locked segments, spread over its volumes."""
    d = tmp_path_factory.mktemp("cluster")
    c = _cluster(d / "store")
    try:
        store = S3ObjectStore(c.endpoint, c.access_key, c.secret_key, BUCKET)
        assert store.check().retention_enforced
        footage = [store_segment(store, d, "cam-cl", i, size=300_000 + i) for i in range(8)]
        yield c, store, footage, d
    finally:
        c.stop()


def _until(fn, timeout: float = 60.0):
    """``fn()`` retried until it returns without an exception; (its result, seconds taken, attempts)."""
    t0, attempts = time.monotonic(), 0
    while True:
        attempts += 1
        try:
            return fn(), time.monotonic() - t0, attempts
        except Exception:
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.2)


def _read_all(store: S3ObjectStore, footage) -> float:
    """Every object byte-identical; the longest wait for one of them (a stall), in seconds."""
    worst = 0.0
    for stored, data in footage:
        got, took, _ = _until(lambda: store.open(stored.key, stored.version_id).read())
        assert got == data, stored.key
        worst = max(worst, took)
    return worst


def _volume_servers(c: SeaweedCluster) -> set[str]:
    """The volume servers the master lists (``volume.list`` as the service, holding the secrets, runs it)."""
    out = authorized_shell(Weed.cluster(c, "volume-1"), "volume.list\n", c.layout.secrets_dir).stdout
    return {v.name for v in c.layout.volumes if f"DataNode {v.host}:{v.port} " in out}


def test_layout_is_checked_and_round_trips(tmp_path):
    lay = ClusterLayout.local(tmp_path, masters=3)
    assert ClusterLayout.from_json(lay.to_json()) == lay
    assert len({v.rack for v in lay.volumes}) == 3 and lay.replication == "010"
    cmd = node_command(lay, "volume-2", weed="weed")
    assert f"-rack={lay.node('volume-2').rack}" in cmd and f"-ip.bind={lay.node('volume-2').host}" in cmd
    assert ",".join(m.address for m in lay.masters) in " ".join(cmd)
    assert "-disableHttp" in node_command(lay, "master-1", weed="weed") and "-disableHttp" in node_command(lay, "filer")
    s3 = node_command(lay, "s3", weed="weed")
    assert "-iam=false" in s3 and any(a.startswith("-config=") for a in s3)
    for bad in (dict(nodes=lay.nodes[:2] + lay.nodes[3:]),  # 2 masters
                dict(nodes=tuple(n for n in lay.nodes if n.name != "volume-3")),  # 2 volume servers
                dict(replication="000")):
        with pytest.raises(ConfigError):
            ClusterLayout(**{**dict(secrets_dir=lay.secrets_dir, nodes=lay.nodes), **bad})


def test_bucket_is_locked_and_the_services_keys_cannot_remove_overwrite_or_shorten(cluster):
    c, store, footage, d = cluster
    lock = store.lock_config()
    assert (lock.enabled, lock.versioning, lock.mode) == (True, True, "COMPLIANCE"), lock
    stored, data = footage[0]
    assert stored.mode == "COMPLIANCE"
    own = Minio(c.endpoint.removeprefix("http://"), c.access_key, c.secret_key, secure=False)
    with pytest.raises(S3Error):
        own.remove_object(BUCKET, stored.key, version_id=stored.version_id)
    with pytest.raises(S3Error):
        own.set_object_retention(BUCKET, stored.key, Retention(COMPLIANCE, stored.retain_until.replace(year=2020)),
                                 version_id=stored.version_id)
    # an overwrite is a new version; the locked one stays as it was
    own.put_object(BUCKET, stored.key, io.BytesIO(b"forged"), 6)
    assert store.open(stored.key, stored.version_id).read() == data
    now, _ = store.stat(stored.key, stored.version_id)
    assert (now.mode, now.retain_until) == ("COMPLIANCE", stored.retain_until)
    anonymous = Minio(c.endpoint.removeprefix("http://"), secure=False)
    with pytest.raises(S3Error):
        anonymous.get_object(BUCKET, stored.key).read()


def test_a_killed_volume_server_loses_nothing_and_rejoins(cluster, record_property):
    c, store, footage, d = cluster
    every = {v.name for v in c.layout.volumes}
    assert _volume_servers(c) == every
    figures = {}
    c.kill("volume-1")  # SIGKILL
    try:
        figures["read stall, volume-1 dead (s)"] = _read_all(store, footage)
        # writes go on, locked and read back by put_segment itself
        written = []
        for i in range(4):
            (stored, data), took, attempts = _until(lambda: store_segment(store, d, "cam-v1-dead", i, size=200_000))
            assert stored.mode == "COMPLIANCE"
            written.append((stored, data))
            figures.setdefault("first write, volume-1 dead (s)", took)
            figures.setdefault("first write attempts", attempts)
    finally:
        c.start_node("volume-1")
    # rejoined: the master lists it again ...
    _, took, _ = _until(lambda: _assert(_volume_servers(c) == every), timeout=30)
    figures["volume-1 listed again after restart (s)"] = took
    # ... and with volume-2 dead, everything reads and writes need volume-1 (010: two live racks)
    c.kill("volume-2")
    try:
        figures["read stall, volume-2 dead (s)"] = _read_all(store, footage + written)
        (stored, data), took, _ = _until(lambda: store_segment(store, d, "cam-v2-dead", 1, size=200_000))
        figures["first write, volume-2 dead (s)"] = took
        assert store.open(stored.key, stored.version_id).read() == data
    finally:
        c.start_node("volume-2")
    _until(lambda: _assert(_volume_servers(c) == every), timeout=30)
    record_property("figures", json.dumps(figures))
    print("cluster failover figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))


def _assert(cond: bool) -> None:
    if not cond:
        raise AssertionError("not yet")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lockdown_attacks_fail_on_every_process_of_the_cluster(cluster, family):
    c, store, footage, d = cluster
    stored, data = footage[1]
    w = Weed.cluster(c, "volume-1")
    fids = chunk_fids(w, stored.key, stored.version_id)
    assert len(fids) == 1, fids
    holder = next(v.name for v in c.layout.volumes if chunk_bytes(Weed.cluster(c, v.name), fids[0]) == (200, data))
    w = Weed.cluster(c, holder)
    t = Target(stored.key, stored.version_id, fids[0], data)
    targets: list[int | str] = []
    for name, proc in sorted(c.procs.items()):
        ports, sockets = listening(proc.pid)
        n = c.layout.node(name)
        assert ports <= {n.port, n.grpc} and n.grpc in ports, (name, ports)  # nothing unexpected to attack
        targets += sorted(ports) + sorted(sockets)
    attacker = d / f"attacker-{list(FAMILIES).index(family)}"
    attacker.mkdir(exist_ok=True)
    tried, failures = FAMILIES[family](targets, t, w, attacker)
    damage = footage_damage(w, store, stored, t)
    assert tried and not failures and not damage, (f"{len(failures)} of {tried} attacks not refused:\n  "
                                                   + "\n  ".join(failures) + "\nfootage: " + ("; ".join(damage) or "intact"))


def test_secrets_are_private_and_every_process_runs_in_them(cluster):
    c, *_ = cluster
    sd = c.layout.secrets_dir
    assert (sd.stat().st_mode & 0o777) == 0o700
    for f in ("security.toml", "s3-identity.json", "tls/ca.crt", "tls/node.crt", "tls/node.key"):
        assert ((sd / f).stat().st_mode & 0o777) == 0o600, f
    for name, proc in c.procs.items():
        assert Path(f"/proc/{proc.pid}/cwd").resolve() == sd.resolve(), name  # weed reads ./security.toml
        assert (c.layout.node(name).dir.stat().st_mode & 0o777) == 0o700, name
    out = subprocess.run(["runuser", "-u", "postgres", "--", "cat", str(sd / "security.toml")], capture_output=True)
    assert out.returncode != 0


def test_each_component_runs_from_the_cli_as_a_systemd_unit_would(tmp_path):
    """``labwitness store-node init`` once, then ``store-node run --component X`` per component (the
    unit's ExecStart; it execs weed): the cluster takes locked footage from the service's client."""
    import signal
    import sys

    from storage.seaweed import wait_s3_ready
    from storage.seaweed_cluster import wait_listening

    lay = ClusterLayout.local(tmp_path / "store", volume_size_limit_mb=64, volume_stop_grace_s=1)
    lay.save(tmp_path / "cluster.json")
    cli = [str(Path(sys.executable).parent / "labwitness"), "store-node"]
    env = {**os.environ, "LABWITNESS_STORE_LAYOUT": str(tmp_path / "cluster.json")}
    init = subprocess.run([*cli, "init", "--show-secret"], env=env, capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    conf = dict(line.split("=", 1) for line in init.stdout.splitlines() if line.startswith("LABWITNESS_"))
    assert conf["LABWITNESS_S3_ENDPOINT"] == lay.s3_endpoint
    procs = []
    try:
        for n in lay.nodes:  # all at once, as units start (the CLI takes seconds to import); weed retries peers
            procs.append(subprocess.Popen([*cli, "run", "--component", n.name], env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for n, p in zip(lay.nodes, procs):
            wait_listening(n.host, n.grpc, p, timeout=60)
            assert Path(f"/proc/{p.pid}/exe").resolve().name == "weed"  # exec'd: the unit's main process is weed
        wait_s3_ready(lay.s3_endpoint, procs[-1], lay.s3.dir / "weed.log")
        store = S3ObjectStore(conf["LABWITNESS_S3_ENDPOINT"], conf["LABWITNESS_S3_ACCESS_KEY"],
                              conf["LABWITNESS_S3_SECRET_KEY"], "cli-footage")
        assert store.check().retention_enforced
        stored, data = store_segment(store, tmp_path, "cam-cli")
        assert stored.mode == "COMPLIANCE" and store.open(stored.key, stored.version_id).read() == data
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:  # the filer's gRPC shutdown takes 15 s
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def namespaces():
    """Three network namespaces, each with a veth to the host: (host address, namespace address, name)."""
    import secrets
    import shutil

    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 (ip netns)")
    tag, net = secrets.token_hex(3), secrets.randbelow(200) + 20
    made = []

    def sh(*a: str) -> None:
        subprocess.run(a, check=True, capture_output=True)

    try:
        for i in range(1, 4):
            ns, host_if, ns_if = f"lwsc{tag}{i}", f"lwsc{tag}{i}h", f"lwsc{tag}{i}n"
            sh("ip", "netns", "add", ns)
            made.append((ns, host_if))
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            sh("ip", "link", "set", ns_if, "netns", ns)
            sh("ip", "addr", "add", f"10.{net}.{i}.1/24", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            for cmd in (["ip", "addr", "add", f"10.{net}.{i}.2/24", "dev", ns_if], ["ip", "link", "set", ns_if, "up"],
                        ["ip", "link", "set", "lo", "up"], ["ip", "route", "add", "default", "via", f"10.{net}.{i}.1"]):
                sh("ip", "netns", "exec", ns, *cmd)
        yield [(f"10.{net}.{i}.1", f"10.{net}.{i}.2", f"lwsc{tag}{i}") for i in range(1, 4)]
    finally:
        for ns, host_if in made:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_volume_servers_in_their_own_network_namespaces(tmp_path, namespaces):
    """The API the topology test uses: each volume server on its own address in its own namespace
    (``with_hosts`` + ``prefixes``); the certificate names every address, mTLS and JWT work across them."""
    from storage.seaweed_cluster import with_hosts

    (h1, _, _), *_ = namespaces
    lay = with_hosts(ClusterLayout.local(tmp_path / "store", volume_size_limit_mb=64, volume_stop_grace_s=1),
                     {"master-1": h1, "filer": h1, "s3": h1,
                      **{f"volume-{i}": addr for i, (_, addr, _) in enumerate(namespaces, start=1)}})
    c = SeaweedCluster(lay, prefixes={f"volume-{i}": ("ip", "netns", "exec", ns)
                                      for i, (_, _, ns) in enumerate(namespaces, start=1)})
    with c:
        store = S3ObjectStore(c.endpoint, c.access_key, c.secret_key, "ns-footage")
        assert store.check().retention_enforced
        footage = [store_segment(store, tmp_path, "cam-ns", i, size=100_000) for i in range(4)]
        c.kill("volume-2")
        _read_all(store, footage)
        stored, data = _until(lambda: store_segment(store, tmp_path, "cam-ns", 9, size=100_000))[0]
        assert store.open(stored.key, stored.version_id).read() == data


def test_the_service_uses_the_cluster_with_only_the_endpoint_and_keys(cluster, tmp_path):
    """No setting beyond LABWITNESS_S3_ENDPOINT and the two keys: the store is external, locked, healthy."""
    from api.runtime import Runtime
    from api.settings import load_settings

    c, *_ = cluster
    s = load_settings(data_dir=tmp_path / "data", retention_jobs=False, s3_endpoint=c.endpoint,
                      s3_access_key=c.access_key, s3_secret_key=c.secret_key, s3_bucket="service-footage")
    with Runtime(s, recording=False) as rt:
        assert rt.seaweed is None and rt.store.check().retention_enforced
        lock = rt.store.lock_config()
        assert (lock.enabled, lock.mode) == (True, "COMPLIANCE")
        assert rt.health.report()["storage_protection"]["profile"] == "external"
