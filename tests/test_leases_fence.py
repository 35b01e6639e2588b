"""A recorder node cut off from PostgreSQL stops recording a camera once its lease has expired by its
own clock, and its spool uploads what it recorded once the database is back (docs/cluster.md);
SQLite refuses a second ``serve`` node with exit 2."""

import signal
import subprocess
import sys
import time
import urllib.request

from clitools import ROOT, env_for, lw
from conftest import free_port, make_store, wait_for
from index.db import make_engine
from index.leases import LeaseStore
from index.migrate import upgrade
from index.queries import IndexStore
from labwitness.clock import SystemClock
from recorder.leases import LeaseManager
from recorder.service import CameraSpec, RecorderService
from recorder.worker import RecorderConfig
from retention.policy import RetentionPolicy


def test_cut_off_node_stops_at_lease_expiry_and_uploads_later(tmp_path, pg_cluster, seaweed, rtsp):
    engine = make_engine(pg_cluster.url, connect_timeout_s=1)
    upgrade(engine)
    index = IndexStore(engine)
    svc = RecorderService(tmp_path / "spool", make_store(seaweed), index, RetentionPolicy(),
                          RecorderConfig(segment_seconds=2.0, recorder_id="n1", open_timeout_s=3, read_timeout_s=3)).start()
    store = LeaseStore(engine, lambda: int(time.time() * 1000))
    store.register("n1", "recorder", "h", 1, "", live_ms=4000)
    lm = LeaseManager(store, svc, lambda: [CameraSpec("cam", rtsp.url("/live"))], node_id="n1", lease_s=4.0,
                      renew_s=1.0, cap=8, clock=SystemClock()).start()
    try:
        wait_for(lambda: "cam" in svc.workers() and svc.workers()["cam"].status.segments >= 2, 60, what="recording")
        # another recorder node is alive: from now on a database outage means the camera may be taken over
        LeaseStore(engine, lambda: int(time.time() * 1000)).register("n2", "recorder", "h", 2, "", live_ms=4000)
        wait_for(lambda: lm.others_alive, 10, what="n2 seen alive")
        assert svc.workers()["cam"].epoch == 1
        pg_cluster.stop()
        cut = time.monotonic()
        wait_for(lambda: "cam" not in svc.workers(), 30, what="recording stopped at lease expiry")
        stopped_after = time.monotonic() - cut
        # never before the lease could have expired: the last renewal was at most renew_s before the cut
        assert stopped_after >= 4.0 - 1.0, stopped_after
        print(f"\nFIGURES fenced_after_s={stopped_after:.1f} (lease 4 s, renew 1 s)")
        assert not lm.held
        pg_cluster.start()
        # the spool uploads and indexes what was recorded while the database was away, under epoch 1
        wait_for(lambda: svc.uploader.backlog() == 0, 60, what="spool drained")
        segs = list(index.iter_segments("cam"))
        assert segs and all(s.node_id == "n1" and s.epoch in (1, 2) for s in segs)
        assert any(s.epoch == 1 and s.end_ms > int(time.time() * 1000) - 120_000 for s in segs)
    finally:
        lm.stop()
        svc.stop(5.0)
        engine.dispose()


def test_sqlite_refuses_a_second_serve_node(tmp_path, seaweed):
    env = env_for(tmp_path, seaweed, bucket="single-box", LABWITNESS_RETENTION_JOBS="false")
    port = free_port()
    first = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--roles", "recorder,jobs", "--node-id",
                              "box-1", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.read()
            except OSError:
                return None
        body = wait_for(up, 60, what="first node up")
        assert b'"node_id":"box-1"' in body and b'"roles":["jobs","recorder"]' in body
        # a node without the api role serves nothing else
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
            raise AssertionError("the API answered on a recorder node")
        except urllib.error.HTTPError as e:
            assert e.code == 404
        second = lw(["serve", "--node-id", "box-2", "--port", str(free_port())], env, timeout=60)
        assert second.returncode == 2, second.stderr
        assert "SQLite 索引只支持一个节点" in second.stderr and "box-1" in second.stderr
        bad = lw(["serve", "--roles", "recorder,cook", "--port", str(free_port())], env, timeout=60)
        assert bad.returncode == 2 and "cook" in bad.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
