"""The one clock for times that one node writes and another judges (docs/cluster.md, "One clock").

A camera lease's expiry, a node's heartbeat, an export worker's heartbeat and a web session's
expiry are written by one node and compared with "now" by another.  Read from each node's own
wall clock, correctness hung on the hosts' clock sync: a node running 10 s ahead claimed a live
lease 10 s before its holder let go (both recorded the camera), one running behind failed over
late.  So these times are read from the **database server's** clock, in the transaction that
writes or judges them: every node reads the same clock, and a node's clock offset changes
nothing.  (The hosts' clocks still date footage -- ``doctor`` checks them -- but no exclusion
and no takeover depends on them.)

A :data:`DbNow` takes the connection of the transaction at hand and returns epoch milliseconds.
:func:`server_clock` is PostgreSQL's ``clock_timestamp()``: the time of the call, not of the
transaction's start, so a time read late in a transaction is not in the past.  SQLite is one box:
its one node's clock is the only clock there is, so :func:`db_clock` gives the node's clock on
SQLite -- which is also how tests drive it.  Tests on PostgreSQL that must fast-forward move the
server's clock by an offset of their own (:func:`shifted`); the statements still read the server.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

#: the database's "now" in epoch ms, read with the transaction's connection
DbNow = Callable[[Connection], int]

#: floored, not rounded: a time read half a millisecond ahead would let a lease be claimed that early
_SERVER_NOW_MS = text("SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)")


def server_clock(conn: Connection) -> int:
    """PostgreSQL's clock, now, in epoch ms."""
    return int(conn.execute(_SERVER_NOW_MS).scalar_one())


def node_clock(now_ms: Callable[[], int]) -> DbNow:
    """This node's own clock as a :data:`DbNow` (SQLite: the one node's clock is the database's)."""
    return lambda conn: now_ms()


def shifted(base: DbNow, offset_ms: Callable[[], int]) -> DbNow:
    """``base`` moved by ``offset_ms()`` at each read: tests fast-forward the server's clock with it."""
    return lambda conn: base(conn) + offset_ms()


def db_clock(engine: Engine, now_ms: Callable[[], int]) -> DbNow:
    """The clock of cross-node times on ``engine``: the server's on PostgreSQL, ``now_ms`` (the node's) on SQLite."""
    return server_clock if engine.dialect.name == "postgresql" else node_clock(now_ms)
