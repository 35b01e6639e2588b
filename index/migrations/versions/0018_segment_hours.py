"""segment_hour: stored segments counted per camera-hour; segment_run.max_len_ms

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 21:30:00

A report's footage counted each run's segments inside its window from an index (decision
54): at 256 cameras its p99 report counted ~50 000 index entries, most of its time.  Now the
same trigger that keeps the runs keeps, per camera and UTC hour (by segment start), the
number of stored segments of positive length, +1 / -1 per segment (``index.segment_runs``,
decision 56): a window counts the whole hours inside it from ``segment_hour`` and only its
two partial hours from the index.  ``segment_run.max_len_ms`` is an upper bound of the
length of the run's segments: the segments that begin before a window and reach into it are
looked for that far back, not ``MAX_SEGMENT_MS`` (40 min) back.

Expand-only.  ``max_len_ms`` defaults to ``MAX_SEGMENT_MS``, the bound every query relied on
before, so a run written by a node of the previous release (its settle knows no such column)
is answered as before, only slower.  The previous release's writers keep ``segment_hour`` too:
the trigger, not their code, maintains it.  The backfill holds writers back (the trigger's
table lock) for about half a minute per 17 M segments; recorders spool meanwhile.
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

LOCK_CLASS = 1280787027  # index.segment_runs.LOCK_CLASS (repeated: a migration is frozen)
HOUR_MS = 3_600_000  # index.segment_runs.HOUR_MS
MAX_SEGMENT_MS = 2_400_000  # labwitness.segment_limits.MAX_SEGMENT_MS when this was written


def _hour(x: str) -> str:
    """The UTC hour (epoch ms) of ``x``, flooring on both databases (their % truncates)."""
    return f"(({x}) - ((({x}) % {HOUR_MS}) + {HOUR_MS}) % {HOUR_MS})"


PG_FUNCTION = """
CREATE OR REPLACE FUNCTION segment_run_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lo bigint; hi bigint; keep bigint; runs integer; len bigint; have_len bigint; left_n integer;
BEGIN
  IF current_setting('labwitness.segment_runs', true) = 'off' THEN
    RETURN NULL;  -- rows moved between partitions, same footage (index.segment_runs.untracked)
  END IF;
  IF TG_OP <> 'INSERT' AND OLD.status = 'stored' AND OLD.end_ms > OLD.start_ms THEN
    IF TG_OP = 'DELETE' OR NEW.status <> 'stored' OR NEW.start_ms <> OLD.start_ms
       OR NEW.end_ms <> OLD.end_ms OR NEW.camera_id <> OLD.camera_id THEN
      INSERT INTO segment_run_dirty (camera_id, start_ms, end_ms) VALUES (OLD.camera_id, OLD.start_ms, OLD.end_ms);
      UPDATE segment_hour SET n = n - 1 WHERE camera_id = OLD.camera_id AND hour_ms = %(old_hour)s
        RETURNING segment_hour.n INTO left_n;
      IF left_n <= 0 THEN
        DELETE FROM segment_hour WHERE camera_id = OLD.camera_id AND hour_ms = %(old_hour)s;
      END IF;
    ELSE
      RETURN NULL;  -- still stored, same span: the runs are unchanged
    END IF;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status = 'stored' AND NEW.end_ms > NEW.start_ms THEN
    PERFORM pg_advisory_xact_lock(%(lock)d, hashtext(NEW.camera_id));
    INSERT INTO segment_hour (camera_id, hour_ms, n) VALUES (NEW.camera_id, %(new_hour)s, 1)
      ON CONFLICT (camera_id, hour_ms) DO UPDATE SET n = segment_hour.n + 1;
    len := NEW.end_ms - NEW.start_ms;
    SELECT min(start_ms), max(end_ms), min(id), count(*), max(max_len_ms) INTO lo, hi, keep, runs, have_len
      FROM segment_run WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms AND start_ms <= NEW.end_ms;
    IF runs = 0 THEN
      INSERT INTO segment_run (camera_id, start_ms, end_ms, max_len_ms) VALUES (NEW.camera_id, NEW.start_ms, NEW.end_ms, len);
    ELSIF runs > 1 OR lo > NEW.start_ms OR hi < NEW.end_ms OR have_len < len THEN
      UPDATE segment_run SET start_ms = least(lo, NEW.start_ms), end_ms = greatest(hi, NEW.end_ms),
                             max_len_ms = greatest(have_len, len) WHERE id = keep;
      IF runs > 1 THEN
        DELETE FROM segment_run WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms
                                  AND start_ms <= NEW.end_ms AND id <> keep;
      END IF;
    END IF;
  END IF;
  RETURN NULL;
END $$""" % {"lock": LOCK_CLASS, "old_hour": _hour("OLD.start_ms"), "new_hour": _hour("NEW.start_ms")}

# SQLite: the same in the four triggers of 0017, with the hour counts added.  The merge
# inserts the joined run (with the longest segment length of what it joins) and deletes the
# runs it replaced (last_insert_rowid() is the trigger's own insert while it runs).
_SQLITE_MERGE = f"""
  INSERT INTO segment_hour (camera_id, hour_ms, n) VALUES (NEW.camera_id, {_hour("NEW.start_ms")}, 1)
    ON CONFLICT (camera_id, hour_ms) DO UPDATE SET n = n + 1;
  INSERT INTO segment_run (camera_id, start_ms, end_ms, max_len_ms)
    SELECT NEW.camera_id, min(NEW.start_ms, coalesce(min(start_ms), NEW.start_ms)),
           max(NEW.end_ms, coalesce(max(end_ms), NEW.end_ms)),
           max(NEW.end_ms - NEW.start_ms, coalesce(max(max_len_ms), 0))
    FROM segment_run WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms AND start_ms <= NEW.end_ms;
  DELETE FROM segment_run WHERE camera_id = NEW.camera_id AND end_ms >= NEW.start_ms AND start_ms <= NEW.end_ms
                            AND id <> last_insert_rowid();"""
_SQLITE_DIRTY = f"""
  INSERT INTO segment_run_dirty (camera_id, start_ms, end_ms) VALUES (OLD.camera_id, OLD.start_ms, OLD.end_ms);
  UPDATE segment_hour SET n = n - 1 WHERE camera_id = OLD.camera_id AND hour_ms = {_hour("OLD.start_ms")};
  DELETE FROM segment_hour WHERE camera_id = OLD.camera_id AND hour_ms = {_hour("OLD.start_ms")} AND n <= 0;"""
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

# index.segment_runs.HOURS_OF_SEGMENTS, repeated on purpose: a migration is frozen
BACKFILL_HOURS = f"""
INSERT INTO segment_hour (camera_id, hour_ms, n)
SELECT camera_id, {_hour("start_ms")}, COUNT(*) FROM segment
WHERE status = 'stored' AND end_ms > start_ms GROUP BY 1, 2"""

# the longest segment of each run: a segment of positive length overlaps exactly one run
BACKFILL_MAX_LEN = """
UPDATE segment_run SET max_len_ms = coalesce((
  SELECT max(s.end_ms - s.start_ms) FROM segment s WHERE s.camera_id = segment_run.camera_id
    AND s.status = 'stored' AND s.end_ms > s.start_ms AND s.start_ms >= segment_run.start_ms
    AND s.start_ms < segment_run.end_ms), 0)"""


def upgrade() -> None:
    pg = op.get_bind().dialect.name == 'postgresql'
    # sqlite: a table whose rows live in its primary key's b-tree, so a sum over hours reads
    # that b-tree alone (PostgreSQL: n is updated in place, HOT, so it stays out of the index)
    op.create_table(
        'segment_hour',
        sa.Column('camera_id', sa.String(length=64), nullable=False),
        sa.Column('hour_ms', sa.BigInteger(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('camera_id', 'hour_ms'),
        sqlite_with_rowid=False,
    )
    # a plain ADD COLUMN (a constant default) on both: a batch copy of the table would trip
    # SQLite's check of the triggers that name it
    op.add_column('segment_run', sa.Column('max_len_ms', sa.BigInteger(), nullable=False,
                                           server_default=sa.text(str(MAX_SEGMENT_MS))))
    if pg:
        op.execute("LOCK TABLE segment IN SHARE ROW EXCLUSIVE MODE")  # writers wait for the backfill
        op.execute(PG_FUNCTION)
    else:
        for name, ddl in SQLITE_TRIGGERS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
            op.execute(ddl)
    op.execute(BACKFILL_HOURS)
    op.execute(BACKFILL_MAX_LEN)
    if pg:  # statistics now, not at autovacuum's next pass: the report plans by them
        op.execute("ANALYZE segment_hour")
        op.execute("ANALYZE segment_run")


def _previous():
    """0017's trigger definitions (a migration is frozen: read from its file, not rewritten)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_lw_0017", Path(__file__).with_name("0017_segment_runs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def downgrade() -> None:
    prev = _previous()
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(prev.PG_FUNCTION)
        op.drop_column('segment_run', 'max_len_ms')
    else:
        for name in prev.SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.drop_column('segment_run', 'max_len_ms')  # SQLite 3.35+: no index or trigger names it
        for ddl in prev.SQLITE_TRIGGERS.values():
            op.execute(ddl)
    op.drop_table('segment_hour')
