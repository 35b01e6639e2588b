"""The pure policy of camera leases (recorder.lease_policy): table-driven."""

import pytest

from recorder.lease_policy import LeaseView, fair_share, plan

NOW, LEASE = 100_000, 8_000


def held(cid, node, expires=NOW + 5_000, **kw):
    return cid, LeaseView(cid, node, expires, **kw)


CASES = [
    # (name, me, wanted {cam: rate}, leases, live nodes, cap, expected claim, expected release)
    ("alone, nothing leased: takes all", "a", {"c1": 1, "c2": 1, "c3": 1}, [], {"a"}, 64, ["c1", "c2", "c3"], []),
    ("two nodes, nothing leased: fair share each", "a", {"c1": 1, "c2": 1, "c3": 1, "c4": 1}, [], {"a", "b"}, 64,
     ["c1", "c2"], []),
    ("cap bounds a lone node", "a", {"c1": 1, "c2": 1, "c3": 1}, [], {"a"}, 2, ["c1", "c2"], []),
    ("expired lease of a dead node: claimed beyond fair share (failover)", "a", {"c1": 1, "c2": 1},
     [held("c1", "a"), held("c2", "b", expires=NOW - 1)], {"a", "b"}, 64, ["c2"], []),
    ("live lease of another node: left alone", "a", {"c1": 1, "c2": 1},
     [held("c1", "a"), held("c2", "b")], {"a", "b"}, 64, [], []),
    ("orphans up to the cap only", "a", {"c1": 1, "c2": 1, "c3": 1},
     [held("c1", "a"), held("c2", "b", expires=NOW - 1), held("c3", "b", expires=NOW - 1)], {"a"}, 2, ["c2"], []),
    ("released by another: claimed at once", "a", {"c1": 1, "c2": 1},
     [held("c1", "a"), held("c2", None, expires=0, prev_node_id="b", prev_end="released", renewed_at_ms=NOW)],
     {"a"}, 64, ["c2"], []),
    ("released by me just now: not taken back", "a", {"c1": 1, "c2": 1},
     [held("c1", "a"), held("c2", None, expires=0, prev_node_id="a", prev_end="released", renewed_at_ms=NOW - 100)],
     {"a", "b"}, 64, [], []),
    ("released by me long ago: taken back", "a", {"c1": 1},
     [held("c1", None, expires=0, prev_node_id="a", prev_end="released", renewed_at_ms=NOW - 60_000)],
     {"a"}, 64, ["c1"], []),
    ("above fair share: sheds the camera nearest the excess load", "a", {"c1": 10, "c2": 1, "c3": 1, "c4": 1},
     [held("c1", "a"), held("c2", "a"), held("c3", "a"), held("c4", "b")], {"a", "b"}, 64, [], ["c1"]),
    ("at fair share: keeps its cameras", "a", {"c1": 1, "c2": 1, "c3": 1, "c4": 1},
     [held("c1", "a"), held("c2", "a"), held("c3", "b"), held("c4", "b")], {"a", "b"}, 64, [], []),
    ("light node claims the heaviest orphan first", "a", {"c1": 1, "c2": 9, "c3": 5},
     [held("c2", "b", expires=NOW - 1), held("c3", "b", expires=NOW - 1)], {"a"}, 1, ["c2"], []),
    ("a disabled camera's lease does not count", "a", {"c1": 1},
     [held("c1", "a"), held("gone", "a")], {"a"}, 64, [], []),
]


@pytest.mark.parametrize("name,me,wanted,leases,live,cap,claim,release", CASES, ids=[c[0] for c in CASES])
def test_plan(name, me, wanted, leases, live, cap, claim, release):
    p = plan(me, NOW, {k: float(v) for k, v in wanted.items()}, dict(leases), live, cap=cap, lease_ms=LEASE)
    assert p.claim == claim
    assert p.release == release


@pytest.mark.parametrize("cams,nodes,cap,share", [(0, 1, 5, 0), (5, 2, 64, 3), (4, 2, 64, 2), (100, 3, 10, 10),
                                                  (3, 0, 64, 3)])
def test_fair_share(cams, nodes, cap, share):
    assert fair_share(cams, nodes, cap) == share


class Seg:
    def __init__(self, name, start, end, epoch):
        self.name, self.start_ms, self.end_ms, self.epoch = name, start, end, epoch


@pytest.mark.parametrize("segs,kept", [
    # (name, start, end, epoch) sorted by start -> the names a footage query shows
    ([("a1", 0, 2000, 1), ("a2", 2000, 4000, 1)], ["a1", "a2"]),  # one holder: all
    ([("a1", 0, 2000, 1), ("b1", 0, 2000, 2)], ["b1"]),  # the same time twice: the newer epoch
    ([("a1", 0, 2000, 1), ("b1", 500, 2500, 2)], ["a1", "b1"]),  # partly covered: both (a1 holds 0-500 alone)
    ([("a1", 1000, 3000, 1), ("b1", 0, 2000, 2), ("b2", 2000, 4000, 2)], ["b1", "b2"]),  # covered by two newer
    ([("b1", 0, 2000, 2), ("a1", 100, 1900, 1)], ["b1"]),  # stale inside a newer one
    ([("x", 0, 2000, None), ("y", 0, 2000, None)], ["x", "y"]),  # single box (no epochs): untouched
    ([("a1", 0, 2000, 3), ("b1", 0, 2000, 2)], ["a1"]),  # the higher epoch wins whoever came first
])
def test_prefer_newer_epoch(segs, kept):
    from index.tiling import prefer_newer_epoch
    rows = [Seg(*s) for s in segs]
    assert [s.name for s in prefer_newer_epoch(rows, 10_000)] == kept


@pytest.mark.parametrize("beat,stopped,state", [(99_000, None, "alive"), (92_001, None, "alive"), (92_000, None, "stale"),
                                                (1, None, "stale"), (99_000, 99_500, "stopped")])
def test_node_state(beat, stopped, state):
    from retention.cluster_health import node_state
    assert node_state(beat, stopped, NOW, LEASE) == state
