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
        # uploader can back off from, not a thread stuck in connect().
        return create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=5,
            connect_args={"connect_timeout": connect_timeout_s},
        )
    return create_engine(url, pool_pre_ping=True)
