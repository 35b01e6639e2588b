"""Which cameras a recorder node claims or gives up: the pure policy of camera leases.

No database, no clock of its own: :func:`plan` takes what the lease table and the
node table say now and returns what this node should do on this tick
(docs/cluster.md, "balancing").  The rules, in order:

1. A camera whose holder stopped renewing (lease expired) is an orphan: every live
   node claims orphans up to ``cap`` at once — recording beats balance.
2. A released camera (a node stopping or shedding load) is claimed the same way,
   except by the node that released it while the release is fresh (no ping-pong).
3. A camera never leased is claimed only while this node is below its fair share
   (``ceil(cameras / live recorder nodes)``), so nodes starting together share.
4. A node above its fair share gives up one camera per tick (at a segment boundary,
   by the caller), the one whose bitrate brings its load nearest the fair load.
   Claims take the heaviest camera first while this node carries less than the fair
   bitrate, the lightest first otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LeaseView:
    camera_id: str
    node_id: str | None  # holder; None: released
    expires_at_ms: int
    prev_node_id: str = ""
    prev_end: str = ""
    renewed_at_ms: int = 0


@dataclass(frozen=True)
class Plan:
    claim: list[str] = field(default_factory=list)  # in the order to try
    release: list[str] = field(default_factory=list)


def fair_share(cameras: int, live_nodes: int, cap: int) -> int:
    return min(cap, math.ceil(cameras / max(1, live_nodes)))


def plan(me: str, now_ms: int, wanted: dict[str, float], leases: dict[str, LeaseView], live_nodes: set[str], *,
         cap: int, lease_ms: int) -> Plan:
    """``wanted``: enabled cameras -> bitrate (bytes/s, 0 unknown); ``leases``: their rows; ``live_nodes``:
    recorder nodes with a fresh heartbeat (this one included); ``now_ms``: the database's time, the clock
    the rows were written on (index.dbclock), never this node's own."""
    live = set(live_nodes) | {me}
    mine = [c for c, lv in leases.items() if lv.node_id == me and lv.expires_at_ms > now_ms and c in wanted]
    share = fair_share(len(wanted), len(live), cap)
    total_rate = sum(wanted.values())
    fair_rate = total_rate / len(live)
    my_rate = sum(wanted[c] for c in mine)
    count = len(mine)

    if count > share:  # rule 4: shed one camera towards the fair load
        target = my_rate - fair_rate
        victim = min(sorted(mine), key=lambda c: abs(wanted[c] - target))
        return Plan(release=[victim])

    orphans, fresh = [], []
    for cid in wanted:
        lv = leases.get(cid)
        if lv is None:
            fresh.append(cid)
        elif lv.node_id is None:
            recently_mine = lv.prev_node_id == me and lv.prev_end == "released" and now_ms - lv.renewed_at_ms < lease_ms
            if not recently_mine:
                orphans.append(cid)
        elif lv.expires_at_ms <= now_ms:
            orphans.append(cid)
    heavy_first = my_rate < fair_rate
    order = lambda cs: sorted(cs, key=lambda c: (-wanted[c] if heavy_first else wanted[c], c))  # noqa: E731
    claim = order(orphans)[:max(0, cap - count)]
    count += len(claim)
    claim += order(fresh)[:max(0, share - count)]
    return Plan(claim=claim)
