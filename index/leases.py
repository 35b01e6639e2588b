"""Cluster nodes and camera leases in the index (docs/cluster.md): the database half.

Every node heartbeats its ``cluster_node`` row.  A recorder node records a camera
only while it holds the camera's ``camera_lease`` row: claimed with ``SELECT ...
FOR UPDATE SKIP LOCKED`` (two nodes never block on, nor both win, the same row),
``epoch`` + 1 on every new claim (the fencing token its index writes carry),
renewed by heartbeat, released at a segment boundary on a graceful stop.  Which
cameras to claim or give up is decided by the pure policy in
:mod:`recorder.lease_policy`; the thread that runs it is :mod:`recorder.leases`.

Every time in these two tables -- heartbeats, claims, renewals, expiries -- is the database
server's clock (:mod:`index.dbclock`), read in the transaction that writes or judges it, never
the node's: another node compares them with its "now", so they must all come from one clock, and
node clocks that disagree then change nothing.  On SQLite (one box) there is one node, whose clock
is the only one; :meth:`LeaseStore.register` refuses a second live node with
:class:`~labwitness.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Engine

from index.dbclock import DbNow, db_clock
from index.models import CameraLease, ClusterNode, Segment
from index.queries import db_guarded
from labwitness.errors import ConfigError

NODE, LEASE = ClusterNode.__table__, CameraLease.__table__


@dataclass(frozen=True)
class Claim:
    """A lease this node has just taken: the epoch it records under, and who held the camera before."""

    camera_id: str
    epoch: int
    prev_node_id: str  # "" when nobody held it before
    prev_end: str  # "" first claim | "expired" (failover) | "released" (handover)
    last_end_ms: int | None  # end of the camera's newest indexed segment (where the failover gap starts)


@dataclass(frozen=True)
class ClusterView:
    """The lease and node tables as one transaction read them, and the database's time of that read:
    what a recorder judges expiry and liveness by (never its own clock)."""

    now_ms: int
    leases: list[CameraLease]
    nodes: list[ClusterNode]

    def live(self, role: str, live_ms: int) -> set[str]:
        """Nodes with ``role``, not stopped, whose heartbeat is younger than ``live_ms`` by the database's clock."""
        return {n.node_id for n in self.nodes if role in n.roles.split(",") and n.stopped_at_ms is None
                and n.heartbeat_at_ms > self.now_ms - live_ms}


class LeaseStore:
    """``now_ms``: this node's clock, used only where the database has none of its own (SQLite);
    ``db_now``: the clock of every time in the tables, by default the server's (:func:`index.dbclock.db_clock`)."""

    def __init__(self, engine: Engine, now_ms: Callable[[], int], *, db_now: DbNow | None = None) -> None:
        self.engine = engine
        self.db_now = db_now or db_clock(engine, now_ms)
        self.sqlite = engine.dialect.name == "sqlite"

    @db_guarded
    def now(self) -> int:
        """The database's time now (epoch ms): the clock lease and heartbeat times are on."""
        with self.engine.connect() as c:
            return self.db_now(c)

    # -- nodes -------------------------------------------------------------------------
    @db_guarded
    def register(self, node_id: str, roles: str, host: str, pid: int, version: str, *, live_ms: int) -> None:
        """This node's row, (re)started now.  On SQLite a second node whose heartbeat is fresher
        than ``live_ms`` is refused: SQLite is one box's index (docs/cluster.md)."""
        with self.engine.begin() as c:
            now = self.db_now(c)
            if self.sqlite:
                self._alone(c, node_id, now, live_ms)
            values = dict(roles=roles, host=host[:255], pid=pid, version=version[:32], started_at_ms=now,
                          heartbeat_at_ms=now, stopped_at_ms=None)
            if c.execute(update(NODE).where(NODE.c.node_id == node_id).values(**values)).rowcount == 0:
                c.execute(insert(NODE).values(node_id=node_id, **values))

    @db_guarded
    def check_alone(self, node_id: str, *, live_ms: int) -> None:
        """SQLite: ConfigError when another node is alive on this index (``serve`` checks before it starts)."""
        if self.sqlite:
            with self.engine.connect() as c:
                self._alone(c, node_id, self.db_now(c), live_ms)

    @staticmethod
    def _alone(c, node_id: str, now: int, live_ms: int) -> None:
        other = c.execute(select(NODE.c.node_id, NODE.c.host, NODE.c.pid).where(
            NODE.c.node_id != node_id, NODE.c.stopped_at_ms.is_(None), NODE.c.heartbeat_at_ms > now - live_ms)).first()
        if other is not None:
            raise ConfigError(
                f"SQLite 索引只支持一个节点：节点 {other.node_id}（{other.host}, pid {other.pid}）正在运行 / the SQLite "
                f"index serves one node and node {other.node_id} ({other.host}, pid {other.pid}) is running: stop "
                "it, or use PostgreSQL (LABWITNESS_DATABASE_URL) for several nodes (docs/cluster.md)")

    @db_guarded
    def heartbeat(self, node_id: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(NODE).where(NODE.c.node_id == node_id)
                      .values(heartbeat_at_ms=self.db_now(c), stopped_at_ms=None))

    @db_guarded
    def stopped(self, node_id: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(NODE).where(NODE.c.node_id == node_id).values(stopped_at_ms=self.db_now(c)))

    @db_guarded
    def nodes(self) -> list[ClusterNode]:
        with self.engine.connect() as c:
            return [ClusterNode(**r._mapping) for r in c.execute(select(NODE).order_by(NODE.c.node_id))]

    # -- leases ------------------------------------------------------------------------
    @db_guarded
    def leases(self) -> list[CameraLease]:
        with self.engine.connect() as c:
            return [CameraLease(**r._mapping) for r in c.execute(select(LEASE).order_by(LEASE.c.camera_id))]

    @db_guarded
    def view(self) -> ClusterView:
        """Leases and nodes with the database's time, in one transaction (the time is read first: a row
        written after it only looks younger, and a claim judges expiry again in its own transaction)."""
        with self.engine.connect() as c:
            now = self.db_now(c)
            leases = [CameraLease(**r._mapping) for r in c.execute(select(LEASE).order_by(LEASE.c.camera_id))]
            nodes = [ClusterNode(**r._mapping) for r in c.execute(select(NODE).order_by(NODE.c.node_id))]
        return ClusterView(now, leases, nodes)

    @db_guarded
    def renew(self, node_id: str, held: dict[str, int], lease_ms: int) -> set[str]:
        """Extend the leases this node holds at these epochs; returns the cameras still held.
        A camera missing from the answer was taken over (or never held): stop recording it.  A lease
        that expired while nobody claimed it (same holder, same epoch) is simply renewed.  The new
        expiry is the database's time, read after the caller sent the renewal, plus ``lease_ms``:
        never earlier than the send plus a lease (the caller's self-fence, recorder.leases)."""
        if not held:
            return set()
        kept: set[str] = set()
        with self.engine.begin() as c:
            now = self.db_now(c)
            for cid, epoch in held.items():
                n = c.execute(update(LEASE).where(LEASE.c.camera_id == cid, LEASE.c.node_id == node_id,
                                                  LEASE.c.epoch == epoch)
                              .values(renewed_at_ms=now, expires_at_ms=now + lease_ms)).rowcount
                if n:
                    kept.add(cid)
        return kept

    @db_guarded
    def claim(self, node_id: str, camera_ids: Iterable[str], lease_ms: int) -> list[Claim]:
        """Take every lease of ``camera_ids`` that is free (released, expired, or new) and that no
        other node is claiming at this moment (SKIP LOCKED); each new claim is a new epoch.  Expired
        means by the database's clock, read in this transaction: the holder's expiry was written on
        the same clock, so no node's clock offset makes a live lease look expired."""
        cams = list(dict.fromkeys(camera_ids))
        if not cams:
            return []
        out: list[Claim] = []
        with self.engine.begin() as c:
            have = set(c.execute(select(LEASE.c.camera_id).where(LEASE.c.camera_id.in_(cams))).scalars())
            for cid in cams:
                if cid not in have:  # a lease row per camera, made on first claim (a race: one insert wins)
                    c.execute(_insert_ignore(self.engine.dialect.name).values(camera_id=cid))
            now = self.db_now(c)
            q = select(LEASE).where(LEASE.c.camera_id.in_(cams),
                                    or_(LEASE.c.node_id.is_(None), LEASE.c.expires_at_ms <= now))
            if not self.sqlite:
                q = q.with_for_update(skip_locked=True)
            for row in c.execute(q).all():
                expired = row.node_id is not None
                prev_node = row.node_id if expired else row.prev_node_id
                prev_end = "expired" if expired else row.prev_end
                values = dict(node_id=node_id, epoch=row.epoch + 1, claimed_at_ms=now, renewed_at_ms=now,
                              expires_at_ms=now + lease_ms, prev_node_id=prev_node or "", prev_end=prev_end)
                if expired:
                    values.update(failovers=row.failovers + 1, last_failover_ms=now)
                elif prev_end == "released":
                    values.update(handovers=row.handovers + 1)
                n = c.execute(update(LEASE).where(LEASE.c.camera_id == row.camera_id, LEASE.c.epoch == row.epoch)
                              .values(**values)).rowcount
                if n:
                    last = c.execute(select(Segment.__table__.c.end_ms).where(Segment.__table__.c.camera_id == row.camera_id)
                                     .order_by(Segment.__table__.c.start_ms.desc()).limit(1)).scalar()
                    out.append(Claim(row.camera_id, row.epoch + 1, prev_node or "", prev_end, last))
        return out

    @db_guarded
    def release(self, node_id: str, camera_id: str, epoch: int) -> bool:
        """Give a lease up (its segment is closed): free at once for another node."""
        with self.engine.begin() as c:
            return bool(c.execute(update(LEASE).where(LEASE.c.camera_id == camera_id, LEASE.c.node_id == node_id,
                                                      LEASE.c.epoch == epoch)
                                  .values(node_id=None, expires_at_ms=0, renewed_at_ms=self.db_now(c),
                                          prev_node_id=node_id, prev_end="released")).rowcount)

    @db_guarded
    def rates(self, since_ms: int) -> dict[str, float]:
        """Bytes per second of each camera's segments since ``since_ms`` (what balancing weighs)."""
        seg = Segment.__table__
        with self.engine.connect() as c:
            rows = c.execute(select(seg.c.camera_id, func.sum(seg.c.size), func.sum(seg.c.end_ms - seg.c.start_ms))
                             .where(seg.c.start_ms > since_ms).group_by(seg.c.camera_id)).all()
        return {cid: size * 1000 / ms for cid, size, ms in rows if ms}

    @db_guarded
    def current_epoch(self, camera_id: str) -> tuple[int, int] | None:
        """(epoch, claimed_at_ms) of the camera's lease, None when it never had one."""
        with self.engine.connect() as c:
            r = c.execute(select(LEASE.c.epoch, LEASE.c.claimed_at_ms).where(LEASE.c.camera_id == camera_id)).first()
        return (r.epoch, r.claimed_at_ms) if r else None


def _insert_ignore(dialect: str):
    """INSERT that does nothing when the row exists (another node made it first)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert(LEASE).on_conflict_do_nothing()
    return insert(LEASE).prefix_with("OR IGNORE")
