"""segment and gap partitioned by month on PostgreSQL (nothing on SQLite)

Revision ID: 0015
Revises: 0012 (the lead relinks it after 0013/0014 at merge)
Create Date: 2026-12-04 12:40:00

Each table becomes ``PARTITION BY RANGE (start_ms)`` with one partition per UTC month
that holds rows, the current month and three ahead, and a DEFAULT partition (safety
net; ``index.partitions.ensure_partitions`` keeps it empty).  The conversion is generic
so columns added by earlier migrations (0013's ``node_id``/``epoch``) come along:
``CREATE TABLE … (LIKE old INCLUDING DEFAULTS INCLUDING CONSTRAINTS …)``, a copy in
column order, and every index and constraint of the old table re-created by its own
definition — primary key and unique constraints with ``start_ms`` appended where it was
not in them (PostgreSQL requires the partition key there; such a constraint gets the
comment ``labwitness: partition key appended`` so the downgrade can take it out again).
The id sequence moves to the new table, so ids go on where they were.  No foreign key
points at either table.

Self-contained on purpose (a migration must not change when application code does); the
same month arithmetic lives in ``index.partitions`` for the running service.
Runs in one transaction: on a large index it holds the tables for the copy's duration,
so upgrade a big installation in a maintenance window (docs/architecture.md, "Index").
"""
from datetime import datetime, timezone
import re

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'  # relinked at merge (issue 16: 0013 leases, 0014 export queue and web sessions)
# A table swap (new partitioned table, copy, DROP + RENAME): the schema it leaves is the previous release's
# (same table and column names), but the copy holds both tables, so it runs in a maintenance window
# (docs/upgrades.md, docs/architecture.md 'Monthly partitions').
CONTRACT = "table swap to monthly partitions: same names and columns after it, but it holds segment and gap for the copy"
branch_labels = None
depends_on = None

TABLES = ('segment', 'gap')
KEY = 'start_ms'
AHEAD = 3
MARK = 'labwitness: partition key appended'

# _month and _name repeat index.partitions.add_months/partition_name on purpose: a migration is frozen
# with the schema it makes, so it does not import code a later release may change.


def _month(ms: int, add: int = 0) -> int:
    d = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    y, m = divmod(d.year * 12 + d.month - 1 + add, 12)
    return int(datetime(y, m + 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


def _name(table: str, month_ms: int) -> str:
    d = datetime.fromtimestamp(month_ms / 1000, tz=timezone.utc)
    return f"{table}_m{d.year:04d}{d.month:02d}"


def _shape(conn, table: str):
    """The table's constraints (primary key, unique) and its other indexes, as definitions."""
    cons = conn.execute(sa.text(
        "SELECT c.conname, c.contype, pg_get_constraintdef(c.oid), obj_description(c.oid, 'pg_constraint') "
        "FROM pg_constraint c WHERE c.conrelid = CAST(:t AS regclass) AND c.contype IN ('p', 'u') ORDER BY c.contype"),
        {'t': table}).all()
    names = {c[0] for c in cons}
    idx = [(n, d) for n, d in conn.execute(sa.text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t"),
        {'t': table}).all() if n not in names]
    seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {'t': table}).scalar()
    return cons, idx, seq


def _swap(conn, table: str, new: str, seq: str | None) -> None:
    conn.execute(sa.text(f'INSERT INTO "{new}" SELECT * FROM "{table}"'))
    if seq:  # the id sequence follows the rows (else dropping the old table would drop it)
        conn.execute(sa.text(f'ALTER SEQUENCE {seq} OWNED BY "{new}".id'))
    conn.execute(sa.text(f'DROP TABLE "{table}"'))
    conn.execute(sa.text(f'ALTER TABLE "{new}" RENAME TO "{table}"'))


def _cols(defn: str) -> list[str]:
    return [c.strip() for c in re.search(r'\(([^()]*)\)', defn).group(1).split(',')]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != 'postgresql':
        return  # SQLite: one box, one file; nothing to partition
    now = int(datetime.now(tz=timezone.utc).timestamp() * 1000)
    for table in TABLES:
        cons, idx, seq = _shape(conn, table)
        new = f'{table}__partitioned'
        conn.execute(sa.text(
            f'CREATE TABLE "{new}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE '
            f'INCLUDING COMMENTS) PARTITION BY RANGE ({KEY})'))
        lo, hi = conn.execute(sa.text(f'SELECT min({KEY}), max({KEY}) FROM "{table}"')).one()
        months = {_month(now, i) for i in range(AHEAD + 1)}
        if lo is not None:
            m = _month(int(lo))
            while m <= int(hi):
                months.add(m)
                m = _month(m, 1)
        for m in sorted(months):
            conn.execute(sa.text(f'CREATE TABLE "{_name(table, m)}" PARTITION OF "{new}" '
                                 f'FOR VALUES FROM ({m}) TO ({_month(m, 1)})'))
        conn.execute(sa.text(f'CREATE TABLE "{table}_default" PARTITION OF "{new}" DEFAULT'))
        _swap(conn, table, new, seq)
        # indexes after the copy: one build per partition instead of row-by-row upkeep
        for name, kind, defn, _comment in cons:
            cols = _cols(defn)
            added = KEY not in cols
            what = 'PRIMARY KEY' if kind == 'p' else 'UNIQUE'
            conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {what} '
                                 f'({", ".join(cols + ([KEY] if added else []))})'))
            if added:
                conn.execute(sa.text(f'COMMENT ON CONSTRAINT "{name}" ON "{table}" IS \'{MARK}\''))
        for _name_, defn in idx:
            if defn.startswith('CREATE UNIQUE') and KEY not in _cols(defn.split(' USING ', 1)[1]):
                defn = re.sub(r'\)', f', {KEY})', defn, count=1) if ' USING ' in defn else defn
            conn.execute(sa.text(defn))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != 'postgresql':
        return
    for table in TABLES:
        cons, idx, seq = _shape(conn, table)
        new = f'{table}__plain'
        conn.execute(sa.text(f'CREATE TABLE "{new}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                             'INCLUDING STORAGE INCLUDING COMMENTS)'))
        _swap(conn, table, new, seq)  # dropping the partitioned table drops its partitions
        for name, kind, defn, comment in cons:
            cols = [c for c in _cols(defn) if not (comment == MARK and c == KEY)]
            what = 'PRIMARY KEY' if kind == 'p' else 'UNIQUE'
            conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {what} ({", ".join(cols)})'))
        for _name_, defn in idx:
            conn.execute(sa.text(defn))
