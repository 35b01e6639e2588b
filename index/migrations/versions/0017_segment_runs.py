"""segment_run: runs of stored footage kept by triggers, and two partial indexes on segment

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 19:00:00

A report's footage merged every window's segments into runs on each call (decision 48): the
cost followed the segments, ~3.4 µs a row in PostgreSQL's window functions.  Now the index
keeps the runs (decision 54, ``index.segment_runs``): a trigger on ``segment`` joins a segment that
becomes stored into the runs it touches, in the writing transaction, and writes a
``segment_run_dirty`` row for one that leaves ``stored`` (``index.segment_runs.settle`` recomputes
those).  A trigger and not only application code, so that every writer keeps the runs: a
node of the previous release during a rolling upgrade (docs/upgrades.md), a bulk COPY, a
Core statement.  A report then counts a run's segments from ``ix_segment_stored_span``
alone (index-only), the rare stored segments of no length from ``ix_segment_stored_empty``,
and a window's gaps by their end from ``ix_gap_camera_end``.

Expand-only.  The backfill computes every camera's runs from its segments while the new
trigger's lock on ``segment`` holds writers back (about a minute per 17 M segments on a
two-core machine: recorders keep footage in their spools meanwhile).  The two indexes are
built without CONCURRENTLY: PostgreSQL cannot build an index on a partitioned table
concurrently (about 20 s per 17 M segments, writers wait as for the backfill).
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

LOCK_CLASS = 1280787027  # index.segment_runs.LOCK_CLASS (repeated: a migration is frozen)

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION segment_run_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lo bigint; hi bigint; keep bigint; n integer;
BEGIN
  IF current_setting('labwitness.segment_runs', true) = 'off' THEN
    RETURN NULL;  -- rows moved between partitions, same footage (index.segment_runs.untracked)
  END IF;
  IF TG_OP <> 'INSERT' AND OLD.status = 'stored' AND OLD.end_ms > OLD.start_ms THEN
    IF TG_OP = 'DELETE' OR NEW.status <> 'stored' OR NEW.start_ms <> OLD.start_ms
       OR NEW.end_ms <> OLD.end_ms OR NEW.camera_id <> OLD.camera_id THEN
      INSERT INTO segment_run_dirty (camera_id, start_ms, end_ms) VALUES (OLD.camera_id, OLD.start_ms, OLD.end_ms);
    ELSE
      RETURN NULL;  -- still stored, same span: the runs are unchanged
    END IF;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status = 'stored' AND NEW.end_ms > NEW.start_ms THEN
    PERFORM pg_advisory_xact_lock(%(lock)d, hashtext(NEW.camera_id));
    SELECT min(start_ms), max(end_ms), min(id), count(*) INTO lo, hi, keep, n FROM segment_run
     WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms AND start_ms <= NEW.end_ms;
    IF n = 0 THEN
      INSERT INTO segment_run (camera_id, start_ms, end_ms) VALUES (NEW.camera_id, NEW.start_ms, NEW.end_ms);
    ELSIF n > 1 OR lo > NEW.start_ms OR hi < NEW.end_ms THEN
      UPDATE segment_run SET start_ms = least(lo, NEW.start_ms), end_ms = greatest(hi, NEW.end_ms) WHERE id = keep;
      IF n > 1 THEN
        DELETE FROM segment_run WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms
                                  AND start_ms <= NEW.end_ms AND id <> keep;
      END IF;
    END IF;
  END IF;
  RETURN NULL;
END $$""" % {"lock": LOCK_CLASS}

PG_TRIGGER = ("CREATE TRIGGER segment_run_track AFTER INSERT OR DELETE OR UPDATE OF status, start_ms, end_ms, camera_id "
              "ON segment FOR EACH ROW EXECUTE FUNCTION segment_run_track()")

# SQLite: the same in three triggers (no procedural code).  The merge inserts the joined run
# and deletes the runs it replaced (last_insert_rowid() is the trigger's own insert while it runs).
_SQLITE_MERGE = """
  INSERT INTO segment_run (camera_id, start_ms, end_ms)
    SELECT NEW.camera_id, min(NEW.start_ms, coalesce(min(start_ms), NEW.start_ms)),
           max(NEW.end_ms, coalesce(max(end_ms), NEW.end_ms))
    FROM segment_run WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms AND start_ms <= NEW.end_ms;
  DELETE FROM segment_run WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms AND start_ms <= NEW.end_ms
                            AND id <> last_insert_rowid();"""
_SQLITE_DIRTY = """
  INSERT INTO segment_run_dirty (camera_id, start_ms, end_ms) VALUES (OLD.camera_id, OLD.start_ms, OLD.end_ms);"""
_SAME = ("OLD.status = 'stored' AND OLD.end_ms > OLD.start_ms AND NEW.status = 'stored' "
         "AND NEW.start_ms = OLD.start_ms AND NEW.end_ms = OLD.end_ms AND NEW.camera_id = OLD.camera_id")
_COLS = "status, start_ms, end_ms, camera_id"
SQLITE_TRIGGERS = {
    "segment_run_insert": f"""CREATE TRIGGER segment_run_insert AFTER INSERT ON segment
WHEN NEW.status = 'stored' AND NEW.end_ms > NEW.start_ms BEGIN{_SQLITE_MERGE}
END""",
    "segment_run_delete": f"""CREATE TRIGGER segment_run_delete AFTER DELETE ON segment
WHEN OLD.status = 'stored' AND OLD.end_ms > OLD.start_ms BEGIN{_SQLITE_DIRTY}
END""",
    "segment_run_leave": f"""CREATE TRIGGER segment_run_leave AFTER UPDATE OF {_COLS} ON segment
WHEN OLD.status = 'stored' AND OLD.end_ms > OLD.start_ms AND NOT ({_SAME}) BEGIN{_SQLITE_DIRTY}
END""",
    "segment_run_enter": f"""CREATE TRIGGER segment_run_enter AFTER UPDATE OF {_COLS} ON segment
WHEN NEW.status = 'stored' AND NEW.end_ms > NEW.start_ms AND NOT ({_SAME}) BEGIN{_SQLITE_MERGE}
END""",
}

# index.segment_runs.REBUILD_ALL_SQL, repeated on purpose: a migration is frozen
BACKFILL = """
INSERT INTO segment_run (camera_id, start_ms, end_ms)
SELECT camera_id, MIN(start_ms), MAX(end_ms) FROM (
  SELECT camera_id, start_ms, end_ms,
         SUM(brk) OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id ROWS UNBOUNDED PRECEDING) AS run
  FROM (SELECT camera_id, id, start_ms, end_ms,
               CASE WHEN start_ms <= MAX(end_ms) OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id
                                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    THEN 0 ELSE 1 END AS brk
        FROM segment WHERE status = 'stored' AND end_ms > start_ms) AS marked) AS numbered
GROUP BY camera_id, run"""


def upgrade() -> None:
    for name in ('segment_run', 'segment_run_dirty'):
        op.create_table(
            name,
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('camera_id', sa.String(length=64), nullable=False),
            sa.Column('start_ms', sa.BigInteger(), nullable=False),
            sa.Column('end_ms', sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint('id'),
        )
    op.create_index('ix_segment_run_camera_end', 'segment_run', ['camera_id', 'end_ms', 'start_ms'])
    op.create_index('ix_segment_run_dirty_camera', 'segment_run_dirty', ['camera_id'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        for ddl in SQLITE_TRIGGERS.values():
            op.execute(ddl)
    op.execute(BACKFILL)
    op.create_index('ix_segment_stored_span', 'segment', ['camera_id', 'start_ms', 'id', 'end_ms', 'status'],
                    sqlite_where=sa.text("status = 'stored'"), postgresql_where=sa.text("status = 'stored'"))
    op.create_index('ix_segment_stored_empty', 'segment', ['camera_id', 'start_ms', 'end_ms', 'status'],
                    sqlite_where=sa.text("status = 'stored' AND end_ms <= start_ms"),
                    postgresql_where=sa.text("status = 'stored' AND end_ms <= start_ms"))
    op.create_index('ix_gap_camera_end', 'gap', ['camera_id', 'end_ms', 'start_ms'])


def downgrade() -> None:
    op.drop_index('ix_gap_camera_end', table_name='gap')
    op.drop_index('ix_segment_stored_empty', table_name='segment')
    op.drop_index('ix_segment_stored_span', table_name='segment')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS segment_run_track ON segment")
        op.execute("DROP FUNCTION IF EXISTS segment_run_track()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table('segment_run_dirty')
    op.drop_table('segment_run')
