"""Lease expiry and node liveness are judged on the database's clock, not the nodes' (docs/cluster.md,
"One clock"): two "nodes" on one real PostgreSQL whose own wall clocks are 30 s ahead and 30 s behind.
Neither claims the other's live lease early, an expired lease is claimed once the database's clock
has passed its expiry -- not 30 s early, not 30 s late -- and each node sees the other alive while it
heartbeats and dead once it stops.  The leases are short (1.5 s) and really run out."""

import time

from index.leases import LeaseStore
from labwitness.clock import SystemClock
from recorder.leases import LeaseManager
from recorder.service import CameraSpec
from retention import cluster_health

SKEW_MS = 30_000
LEASE_S = 1.5
LEASE_MS = round(LEASE_S * 1000)


def wall_ms() -> int:
    return int(time.time() * 1000)


def ahead() -> int:  # a node whose clock runs 30 s fast
    return wall_ms() + SKEW_MS


def behind() -> int:  # and one 30 s slow
    return wall_ms() - SKEW_MS


def _lease(store: LeaseStore, cid: str):
    return {lv.camera_id: lv for lv in store.leases()}[cid]


def _take_over(store: LeaseStore, me: str, cid: str) -> int:
    """Claim ``cid`` as soon as it is free; every refused attempt must have come before its expiry by the
    database's clock (a refusal after it is a late failover).  Returns the claim's epoch."""
    expires = _lease(store, cid).expires_at_ms
    deadline = time.monotonic() + 4 * LEASE_S
    while time.monotonic() < deadline:
        asked_at = store.now()
        got = store.claim(me, [cid], LEASE_MS)
        if got:
            lease = _lease(store, cid)
            # claimed on the database's clock at or after the expiry, and promptly (the loop polls every 50 ms)
            assert expires <= lease.claimed_at_ms < expires + 1000, (lease.claimed_at_ms - expires)
            assert got[0].prev_end == "expired"
            return got[0].epoch
        assert asked_at < expires, f"{me} refused {cid} {asked_at - expires} ms after its expiry"
        time.sleep(0.05)
    raise AssertionError(f"{me} never claimed {cid}")


def test_skewed_nodes_never_claim_a_live_lease_and_take_an_expired_one_on_time(pg):
    fast, slow = LeaseStore(pg, ahead), LeaseStore(pg, behind)
    assert [c.camera_id for c in slow.claim("slow", ["cam-s"], LEASE_MS)] == ["cam-s"]
    assert [c.camera_id for c in fast.claim("fast", ["cam-f"], LEASE_MS)] == ["cam-f"]
    # both renew for two whole leases: neither ever takes the other's camera (with node clocks the
    # fast node saw cam-s expired 30 s before its holder stopped renewing it)
    until = time.monotonic() + 2 * LEASE_S
    while time.monotonic() < until:
        assert fast.claim("fast", ["cam-s"], LEASE_MS) == []
        assert slow.claim("slow", ["cam-f"], LEASE_MS) == []
        assert slow.renew("slow", {"cam-s": 1}, LEASE_MS) == {"cam-s"}
        assert fast.renew("fast", {"cam-f": 1}, LEASE_MS) == {"cam-f"}
        time.sleep(0.2)
    # the fast node dies: the slow one takes cam-f when its lease runs out, not 30 s later
    assert _take_over(slow, "slow", "cam-f") == 2
    # the slow node dies: the fast one takes both when their leases run out, not 30 s earlier
    assert _take_over(fast, "fast", "cam-s") == 2
    assert _take_over(fast, "fast", "cam-f") == 3
    assert {lv.camera_id: (lv.node_id, lv.failovers) for lv in fast.leases()} == {"cam-s": ("fast", 1),
                                                                                  "cam-f": ("fast", 2)}


class FakeRecorder:
    """What LeaseManager asks of a RecorderService: follow the held cameras; no footage here."""

    class uploader:  # noqa: N801 - the attribute LeaseManager drains before releasing
        @staticmethod
        def drain(timeout):
            return True

    def __init__(self) -> None:
        self.cameras: dict[str, int] = {}
        self.takeovers: list[tuple[str, str]] = []  # (camera, reason): only with footage indexed before

    def sync(self, specs) -> None:
        self.cameras = {s.camera_id: s.epoch for s in specs}

    def note_takeover(self, camera_id, since_ms, reason, detail) -> None:
        self.takeovers.append((camera_id, reason))


def test_skewed_recorder_nodes_share_cameras_and_judge_liveness_on_the_database_clock(pg):
    cams = [CameraSpec("cam-1", "rtsp://127.0.0.1/1"), CameraSpec("cam-2", "rtsp://127.0.0.1/2")]
    nodes = {}
    for name, clock in (("fast", ahead), ("slow", behind)):
        store = LeaseStore(pg, clock)
        store.register(name, "recorder", "h", 1, "", live_ms=LEASE_MS)
        nodes[name] = (store, FakeRecorder())
    lm = {name: LeaseManager(store, rec, lambda: cams, node_id=name, lease_s=LEASE_S, renew_s=0.25, cap=8,
                             clock=SystemClock()) for name, (store, rec) in nodes.items()}
    # both tick for two whole leases: each sees the other alive, they share the cameras one each, and
    # nothing ever fails over (with node clocks the fast node saw the slow one's heartbeat a minute old:
    # dead, its camera expired, and took it while the slow node still recorded it)
    until = time.monotonic() + 2 * LEASE_S
    while time.monotonic() < until:
        for name in ("slow", "fast"):
            lm[name].run_once()
        time.sleep(0.1)
    assert lm["fast"].others_alive and lm["slow"].others_alive
    held = {name: lm[name].held_cameras() for name in lm}
    assert sorted(held["fast"]) + sorted(held["slow"]) in (["cam-1", "cam-2"], ["cam-2", "cam-1"]), held
    assert all(epoch == 1 for h in held.values() for epoch in h.values()), held
    assert nodes["fast"][1].cameras == held["fast"] and nodes["slow"][1].cameras == held["slow"]
    assert not nodes["fast"][1].takeovers and not nodes["slow"][1].takeovers
    # the health view from a node 30 s ahead: both alive, each holding one camera
    cluster = cluster_health.gather(pg, ahead(), LEASE_MS)
    assert {n["node_id"]: (n["state"], n["cameras_held"]) for n in cluster["nodes"]} == {"fast": ("alive", 1),
                                                                                         "slow": ("alive", 1)}
    assert cluster_health.classify(cluster) == []
    # the fast node is killed (it ticks no more): the slow node sees it dead after a lease by the
    # database's clock, and takes its camera over then, not 30 s later
    (lost,) = held["fast"]
    expires = _lease(nodes["slow"][0], lost).expires_at_ms
    deadline = time.monotonic() + 4 * LEASE_S
    while lost not in lm["slow"].held_cameras():
        assert time.monotonic() < deadline, "the slow node never took the dead node's camera"
        lm["slow"].run_once()
        time.sleep(0.1)
    lease = _lease(nodes["slow"][0], lost)
    assert expires <= lease.claimed_at_ms < expires + 1000 and lease.epoch == 2 and lease.prev_node_id == "fast"
    assert nodes["slow"][1].cameras == {lost: 2, **held["slow"]}  # it records both now, the taken one under epoch 2
    assert not lm["slow"].others_alive  # no heartbeat from the fast node for a lease: not alive
    cluster = cluster_health.gather(pg, behind(), LEASE_MS)
    assert {n["node_id"]: n["state"] for n in cluster["nodes"]} == {"fast": "stale", "slow": "alive"}
    assert {a[1] for a in cluster_health.classify(cluster)} == {"node_stale", "camera_failover"}
