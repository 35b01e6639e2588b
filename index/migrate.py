"""Run Alembic migrations programmatically (``labwitness db upgrade``, and every start).

On PostgreSQL the upgrade holds a session-level advisory lock (:data:`UPGRADE_LOCK`) for
its whole run, so nodes that start or upgrade at the same moment take turns: the first
migrates, the others wait, then find the schema at head and do nothing.  Session-level
(not transaction-level) so that a migration which must leave the transaction, e.g. for
``CREATE INDEX CONCURRENTLY`` in an ``autocommit_block``, keeps the lock; a node that dies
mid-upgrade drops its connection and with it the lock.  What a migration may change while
older nodes still run is the expand/contract rule of docs/upgrades.md.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

from index.joblock import pg_key
from index.queries import db_errors

HERE = Path(__file__).parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


#: the advisory lock key every node's upgrade takes (same key space as index.joblock's job locks)
UPGRADE_LOCK = pg_key("db-upgrade")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate; a database that cannot be reached is IndexUnavailableError, as for every other query.
    On PostgreSQL one upgrade at a time across all nodes (the module's docstring)."""
    cfg = alembic_config()
    with db_errors(), engine.connect() as conn:
        pg = conn.dialect.name == "postgresql"
        if pg:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": UPGRADE_LOCK})  # waits for another node's upgrade
            conn.commit()
        try:
            # the transaction is Alembic's own (env.py): one for the whole run, which a migration may
            # leave and re-enter with autocommit_block() for CREATE INDEX CONCURRENTLY
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if pg and not conn.invalidated:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": UPGRADE_LOCK})
                conn.commit()


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
