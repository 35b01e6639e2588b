"""Camera leases in the index (index.leases) on real PostgreSQL, and the epoch fence on gap writes;
SQLite refuses a second node.  Lease times are the database server's clock (index.dbclock): a test
that fast-forwards moves that clock by an offset of its own (``shifted``), the node clock changes
nothing on PostgreSQL; tests/test_leases_clock.py lets real leases run out between skewed nodes."""

import threading

import pytest

from index.db import make_engine, sqlite_url
from index.dbclock import node_clock, server_clock, shifted
from index.leases import LeaseStore
from index.migrate import upgrade
from index.models import Gap, Segment
from index.queries import IndexStore
from labwitness.errors import ConfigError


class Clock:
    def __init__(self, t=1_000_000):
        self.t = t

    def __call__(self):
        return self.t


def test_claim_renew_expire_and_epochs(pg):
    skip = Clock(0)  # how far the test has moved the server's clock on
    a, b = (LeaseStore(pg, Clock(), db_now=shifted(server_clock, skip)) for _ in range(2))
    got = a.claim("a", ["c1", "c2"], 8000)
    assert [(c.camera_id, c.epoch, c.prev_end) for c in got] == [("c1", 1, ""), ("c2", 1, "")]
    assert b.claim("b", ["c1", "c2"], 8000) == []  # held and fresh: nobody else gets them
    skip.t += 2000
    assert a.renew("a", {"c1": 1, "c2": 1}, 8000) == {"c1", "c2"}
    assert a.renew("a", {"c1": 7}, 8000) == set()  # a wrong epoch is not this node's lease
    skip.t += 8001  # a stopped renewing: both expire
    before = b.now()
    IndexStore(pg).add_segment(Segment(camera_id="c1", start_ms=5000, end_ms=7000, media_duration_ms=2000, key="k1",
                                       version_id="v", size=1, sha256="0" * 64, node_id="a", epoch=1))
    taken = {c.camera_id: c for c in b.claim("b", ["c1", "c2"], 8000)}
    after = b.now()
    assert taken["c1"].epoch == 2 and taken["c1"].prev_node_id == "a" and taken["c1"].prev_end == "expired"
    assert taken["c1"].last_end_ms == 7000 and taken["c2"].last_end_ms is None
    assert a.renew("a", {"c1": 1, "c2": 1}, 8000) == set()  # the old holder learns it lost them
    lease = {lv.camera_id: lv for lv in a.leases()}["c1"]
    assert lease.node_id == "b" and lease.failovers == 1
    assert before <= lease.last_failover_ms == lease.claimed_at_ms <= after  # the server's (shifted) time
    assert b.release("b", "c2", 2) and not a.release("a", "c1", 1)
    again = a.claim("a", ["c2"], 8000)
    assert again[0].epoch == 3 and again[0].prev_node_id == "b" and again[0].prev_end == "released"
    assert {lv.camera_id: lv for lv in a.leases()}["c2"].handovers == 1


def test_concurrent_claims_never_share_a_camera(pg):
    """Eight nodes claim the same 20 cameras at once: every camera ends with exactly one holder at epoch 1."""
    now = Clock()
    cams = [f"c{i}" for i in range(20)]
    won: dict[str, list[str]] = {}
    barrier = threading.Barrier(8)

    def node(n):
        store = LeaseStore(pg, now)
        barrier.wait()
        for c in store.claim(f"n{n}", cams, 8000):
            won.setdefault(c.camera_id, []).append(f"n{n}")

    threads = [threading.Thread(target=node, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(cams) and all(len(v) == 1 for v in won.values())
    assert {lv.epoch for lv in LeaseStore(pg, now).leases()} == {1}


def test_stale_epoch_gap_write_refused(pg):
    """A holder whose lease was taken over cannot write or grow a gap over the new holder's time."""
    now = Clock()
    # the lease's clock driven by the test (a gap's times are footage times, set below by hand)
    store, index = LeaseStore(pg, now, db_now=node_clock(now)), IndexStore(pg)
    store.claim("a", ["cam"], 8000)
    now.t += 9000
    store.claim("b", ["cam"], 8000)  # epoch 2, claimed at 1_009_000
    claimed = now.t
    # b's failover gap (epoch 2) is written
    index.add_gap(Gap(camera_id="cam", start_ms=990_000, end_ms=claimed + 1500, reason="failover", node_id="b", epoch=2))
    # a's stale reconnect gap starting after the takeover: refused
    index.add_gap(Gap(camera_id="cam", start_ms=claimed + 100, end_ms=claimed + 5000, reason="timeout", node_id="a", epoch=1))
    # a's stale gap starting before: cut where b claimed
    index.add_gap(Gap(camera_id="cam", start_ms=995_000, end_ms=claimed + 5000, reason="timeout", node_id="a", epoch=1))
    # a stale writer re-reporting b's gap (same start and reason) cannot grow it
    index.add_gap(Gap(camera_id="cam", start_ms=990_000, end_ms=claimed + 60_000, reason="failover", node_id="a", epoch=1))
    gaps = {(g.start_ms, g.reason): g for g in index.gaps("cam")}
    assert (claimed + 100, "timeout") not in gaps
    assert gaps[(995_000, "timeout")].end_ms == claimed
    assert gaps[(990_000, "failover")].end_ms == claimed + 1500 and gaps[(990_000, "failover")].epoch == 2
    # the current holder still grows its own gap
    index.add_gap(Gap(camera_id="cam", start_ms=990_000, end_ms=claimed + 2500, reason="failover", node_id="b", epoch=2))
    assert {(g.start_ms, g.reason): g for g in index.gaps("cam")}[(990_000, "failover")].end_ms == claimed + 2500


def test_sqlite_refuses_a_second_live_node(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "i.sqlite3"))
    upgrade(engine)
    now = Clock()
    store = LeaseStore(engine, now)
    store.register("box-1", "api,recorder,jobs", "h", 1, "", live_ms=8000)
    store.register("box-1", "api,recorder,jobs", "h", 2, "", live_ms=8000)  # the same node restarting: fine
    with pytest.raises(ConfigError, match="SQLite"):
        store.register("box-2", "recorder", "h", 3, "", live_ms=8000)
    now.t += 9000  # box-1 stopped heartbeating (crashed): after one lease another node may start
    store.register("box-2", "recorder", "h", 3, "", live_ms=8000)
    store.stopped("box-2")
    store.check_alone("box-3", live_ms=8000)  # a cleanly stopped node does not count
    engine.dispose()
