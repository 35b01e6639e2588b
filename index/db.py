"""Engines for SQLite (embedded, one writer) and PostgreSQL (production)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import create_engine

from index.journal import install_journal_capture
from labwitness.private_fs import private_dir, private_sqlite


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str, *, connect_timeout_s: int = 5) -> Engine:
    # every change to the evidence tables is journaled in its own transaction (index.journal)
    install_journal_capture()
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            if not Path(u.database).parent.exists():
                private_dir(Path(u.database).parent)
            # footage index and audit log: owner only, before SQLite creates -wal/-shm with its mode
            private_sqlite(u.database)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL: readers never block the single writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if u.get_backend_name() == "postgresql":
        # Bounded connect so that a database outage surfaces as an error the
        # uploader can back off from, not a thread stuck in connect(); keepalives and
        # tcp_user_timeout end a connection lost in a silent partition (no reset) in
        # about 30 s instead of the kernel's ~15 min of retransmissions.
        # No JIT: the index's statements are short (a report's, a health fact's); compiling one
        # took ~25 ms of a report statement that runs in ~5 once its estimate crossed
        # jit_above_cost, and 240 ms of the compliance report (decision 56, bench/README.md).
        # Set per session at connect, so it costs no statement; the URL's own options come after it
        # (libpq: the last -c of a name wins), so an installation can still turn it on.
        own = u.query.get("options")
        own = " ".join(own) if isinstance(own, tuple) else own
        return create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=5,
            connect_args={"connect_timeout": connect_timeout_s, "keepalives": 1, "keepalives_idle": 10,
                          "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000,
                          "options": "-c jit=off" + (f" {own}" if own else "")},
        )
    return create_engine(url, pool_pre_ping=True)


def lease_engine(engine: Engine, lease_s: float) -> Engine:
    """The engine of a node's heartbeat and camera leases (docs/cluster.md): on PostgreSQL a small pool
    of its own, so a connection of the API or the uploader stuck in a partition never blocks a renewal,
    with every wait bounded by about half a lease.  A silent partition (packets dropped, no reset) makes a
    call on an open connection hang: ``tcp_user_timeout`` ends one whose bytes go unacknowledged,
    keepalives one waiting for an answer that never comes, on both ends (the server's side matters too:
    a cut node's transaction must not keep its lease rows locked, or ``SKIP LOCKED`` claims of the other
    nodes pass them over for as long as the server's default keepalive of two hours).  The pool discards
    a broken connection and connects afresh (``connect_timeout``) once the network heals.  SQLite: the
    engine itself."""
    if engine.dialect.name != "postgresql":
        return engine
    half_ms = max(1000, round(lease_s * 500))
    idle_s = max(1, round(lease_s / 4))
    server = {  # this session's settings on the server (all settable by any user)
        "statement_timeout": half_ms, "lock_timeout": max(500, half_ms // 2),
        "idle_in_transaction_session_timeout": half_ms, "tcp_user_timeout": half_ms,
        "tcp_keepalives_idle": idle_s, "tcp_keepalives_interval": 1, "tcp_keepalives_count": 2,
    }
    return create_engine(
        engine.url.render_as_string(hide_password=False), pool_pre_ping=True, pool_size=2, max_overflow=2,
        pool_timeout=max(1.0, lease_s / 2), pool_recycle=600,
        connect_args={"connect_timeout": max(2, round(lease_s / 2)), "keepalives": 1, "keepalives_idle": idle_s,
                      "keepalives_interval": 1, "keepalives_count": 2, "tcp_user_timeout": half_ms,
                      "options": " ".join(f"-c {k}={v}" for k, v in server.items())},
    )


def read_only(engine: Engine) -> Engine:
    """The engine for a request that only reads, several statements outside a transaction
    block on PostgreSQL (autocommit): under READ COMMITTED each statement has its own
    snapshot either way, so the answers are the same, but a report's statements ran ~2.5×
    faster without the block: p50 6.0 → 3.7 ms, p99 11.4 → 7.6 ms for report footage at 64
    cameras, interleaved in one process on one database (decision 58, bench/README.md).
    SQLite keeps its transaction: there a read's snapshot spans the request."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")
