"""Health of a cluster (docs/cluster.md): the nodes and the camera leases, as facts and alerts.

``gather`` reads ``cluster_node`` and ``camera_lease``; ``classify`` is pure.  A node
is *alive* while its heartbeat is younger than one lease, *stopped* once it said so,
else *stale* (killed, or cut off from the database).  Lease events: failovers (a
lease that expired and was claimed by another node) and handovers, in total and
per camera with the last failover's time.

Every age here is judged on the database's clock (:mod:`index.dbclock`), the one the
heartbeats and leases were written on: the health node's own clock would call a live
node stale, or a dead one alive, by however far it is off.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.engine import Engine

from index.dbclock import db_clock
from index.models import CameraLease, ClusterNode

DAY_MS = 86_400_000


def node_state(heartbeat_at_ms: int, stopped_at_ms: int | None, now_ms: int, lease_ms: int) -> str:
    if stopped_at_ms is not None:
        return "stopped"
    return "alive" if now_ms - heartbeat_at_ms < lease_ms else "stale"


def gather(engine: Engine, now_ms: int, lease_ms: int) -> dict:
    """Nodes and leases as facts; ``now_ms`` (this node's clock) counts only on SQLite, where it is the
    database's clock too; on PostgreSQL the server's time is read with the rows, and returned as ``db_now_ms``."""
    node_now = now_ms
    with engine.connect() as c:
        now_ms = db_clock(engine, lambda: node_now)(c)
        nodes = c.execute(select(ClusterNode.__table__).order_by(ClusterNode.__table__.c.node_id)).all()
        leases = c.execute(select(CameraLease.__table__).order_by(CameraLease.__table__.c.camera_id)).all()
    held = Counter(lv.node_id for lv in leases if lv.node_id and lv.expires_at_ms > now_ms)
    return {
        "db_now_ms": now_ms,  # the database's time the states were judged at
        "nodes": [{"node_id": n.node_id, "roles": [r for r in n.roles.split(",") if r], "host": n.host, "pid": n.pid,
                   "version": n.version, "state": node_state(n.heartbeat_at_ms, n.stopped_at_ms, now_ms, lease_ms),
                   "heartbeat_age_s": round((now_ms - n.heartbeat_at_ms) / 1000, 1), "cameras_held": held.get(n.node_id, 0)}
                  for n in nodes],
        "leases": {
            "failovers": sum(lv.failovers for lv in leases), "handovers": sum(lv.handovers for lv in leases),
            "cameras": {lv.camera_id: {"node_id": lv.node_id if lv.expires_at_ms > now_ms else None, "epoch": lv.epoch,
                                       "failovers": lv.failovers, "last_failover_ms": lv.last_failover_ms}
                        for lv in leases},
        },
    }


def classify(cluster: dict) -> list[tuple[str, str, str, str | None]]:
    """(level, code, text, camera) alerts: a stale node (heard of in the last day), a failover in the last day
    (by the time ``gather`` judged at)."""
    now_ms = cluster["db_now_ms"]
    out: list[tuple[str, str, str, str | None]] = []
    for n in cluster["nodes"]:
        if n["state"] == "stale" and n["heartbeat_age_s"] * 1000 < DAY_MS:
            out.append(("warning", "node_stale", f"节点 {n['node_id']} 已 {n['heartbeat_age_s']:.0f} 秒无心跳 / node "
                        f"{n['node_id']} has not heartbeated for {n['heartbeat_age_s']:.0f} s (killed or cut off from "
                        "the database); its cameras fail over to the other recorder nodes", None))
    for cid, lv in cluster["leases"]["cameras"].items():
        if lv["last_failover_ms"] is not None and now_ms - lv["last_failover_ms"] < DAY_MS:
            out.append(("warning", "camera_failover", f"{cid}: 24 小时内发生节点故障切换 / failed over to another recorder "
                        f"node in the last 24 h (now on {lv['node_id'] or '-'}, epoch {lv['epoch']})", cid))
    return out
