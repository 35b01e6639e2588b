"""Monthly partitions of ``segment`` and ``gap`` on PostgreSQL (SQLite: nothing to do).

Migration 0015 turns both tables into ``PARTITION BY RANGE (start_ms)`` tables with one
partition per UTC calendar month (``segment_m202612`` holds segments starting in
December 2026) and a ``DEFAULT`` partition as a safety net: a row whose month has no
partition yet is never refused, it lands there.  This module keeps that true:

* :func:`ensure_partitions` creates the current month and ``ahead`` months after it, and
  *splits* the default partition: every month that has rows in it gets its own partition,
  the rows moved in the same transaction (the default ends empty).  Run at start-up
  (``api.runtime``) and hourly by the jobs (``retention.scheduler``).
* :func:`drop_partition_if` removes one month's ``segment`` partition, only when it
  holds no row at all and its month ended before a bound the caller (the expiry sweep,
  which owns the retention rule) gives.  The sweep removes a row only after storage
  confirmed its version deleted, so an empty old partition is footage already gone;
  dropping it reclaims the table's space at once instead of leaving dead rows to vacuum.

Why the partition key is in every primary key and unique constraint: PostgreSQL demands it.
``segment.id`` stays unique in practice (one sequence hands every id out), and a replayed
segment always carries the same ``start_ms`` as its first write, so ``(key, version_id,
start_ms)`` refuses a duplicate exactly as ``(key, version_id)`` did.  No table has a
foreign key to ``segment`` or ``gap`` (holds, findings and journal name segment ids as
plain numbers), so none had to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from index.segment_runs import untracked
from index.queries import db_guarded

TABLES = ("segment", "gap")
KEY = "start_ms"
_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    lo_ms: int | None  # None: the DEFAULT partition
    hi_ms: int | None


def month_start(ms: int) -> int:
    d = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return int(datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp() * 1000)


def add_months(month_ms: int, n: int) -> int:
    d = datetime.fromtimestamp(month_ms / 1000, tz=timezone.utc)
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return int(datetime(y, m + 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


def partition_name(table: str, month_ms: int) -> str:
    d = datetime.fromtimestamp(month_ms / 1000, tz=timezone.utc)
    return f"{table}_m{d.year:04d}{d.month:02d}"


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"), {"t": table}).first() is not None


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The table's partitions, by month (the default last)."""
    rows = conn.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :t AND p.relnamespace = current_schema()::regnamespace"), {"t": table}).all()
    out = []
    for name, bound in rows:
        m = _BOUND.search(bound or "")
        out.append(Partition(table, name, int(m.group(1)), int(m.group(2))) if m else Partition(table, name, None, None))
    return sorted(out, key=lambda p: (p.lo_ms is None, p.lo_ms or 0))


def _default(conn: Connection, table: str) -> str | None:
    return next((p.name for p in partitions(conn, table) if p.lo_ms is None), None)


def create_month(conn: Connection, table: str, month_ms: int) -> str | None:
    """Create the partition of the month starting at ``month_ms`` (moving its rows out of the
    default partition, if any); returns its name, or None when it exists already."""
    lo, hi = month_ms, add_months(month_ms, 1)
    if any(p.lo_ms == lo for p in partitions(conn, table)):
        return None
    name, default = partition_name(table, lo), _default(conn, table)
    # Taken first so no writer puts a row of this month into the default between the move and
    # the attach (the attach would then fail); writers of other months wait only this long.
    if default:
        conn.execute(text(f'LOCK TABLE "{default}" IN ACCESS EXCLUSIVE MODE'))
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'))
    # the CHECK lets the attach skip its validation scan; dropped once attached
    conn.execute(text(f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_range" CHECK ({KEY} >= {lo} AND {KEY} < {hi})'))
    if default:
        with untracked(conn):  # the same rows, moved: the kept runs and hours (index.segment_runs) do not change
            conn.execute(text(f'INSERT INTO "{name}" SELECT * FROM "{default}" WHERE {KEY} >= {lo} AND {KEY} < {hi}'))
            conn.execute(text(f'DELETE FROM "{default}" WHERE {KEY} >= {lo} AND {KEY} < {hi}'))
    conn.execute(text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES FROM ({lo}) TO ({hi})'))
    conn.execute(text(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_range"'))
    return name


def _months_in_default(conn: Connection, table: str) -> list[int]:
    default = _default(conn, table)
    if not default:
        return []
    firsts = conn.execute(text(
        f"SELECT DISTINCT (extract(epoch FROM date_trunc('month', to_timestamp({KEY} / 1000.0) AT TIME ZONE 'UTC')) "
        f'* 1000)::bigint FROM "{default}"')).scalars()
    return sorted(int(m) for m in firsts)


@db_guarded
def ensure_partitions(engine: Engine, now_ms: int, ahead: int = 3) -> list[str]:
    """Partitions for this month and ``ahead`` months on, and for every month found in the
    default partition (which this empties); returns the partitions created.  Nothing on SQLite."""
    if engine.dialect.name != "postgresql":
        return []
    made: list[str] = []
    for table in TABLES:
        with engine.begin() as conn:
            if not is_partitioned(conn, table):
                continue
            months = set(_months_in_default(conn, table))
        months |= {add_months(month_start(now_ms), i) for i in range(ahead + 1)}
        for m in sorted(months):
            with engine.begin() as conn:  # one short transaction per month
                name = create_month(conn, table, m)
            if name:
                made.append(name)
    return made


@db_guarded
def segment_partitions(engine: Engine) -> list[Partition]:
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        return partitions(conn, "segment") if is_partitioned(conn, "segment") else []


@db_guarded
def drop_partition_if(engine: Engine, name: str, allowed: Callable[[Partition, int], bool]) -> bool:
    """Drop the ``segment`` month partition ``name`` if ``allowed(partition, rows_left)`` says so
    (``rows_left``: 0, or 1 meaning "at least one"); returns whether it was dropped.  The rows
    are counted under an exclusive lock on the partition, so none can arrive between the count
    and the drop.  The default partition and gap partitions are never dropped (gaps are tiny
    and say why footage is missing; they are kept)."""
    with engine.begin() as conn:
        part = next((p for p in partitions(conn, "segment") if p.name == name), None)
        if part is None or part.hi_ms is None:
            return False
        conn.execute(text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE'))
        left = 1 if conn.execute(text(f'SELECT 1 FROM "{name}" LIMIT 1')).first() is not None else 0
        if not allowed(part, left):
            return False
        conn.execute(text(f'ALTER TABLE segment DETACH PARTITION "{name}"'))
        conn.execute(text(f'DROP TABLE "{name}"'))
        return True
