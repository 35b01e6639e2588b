"""Runs of stored footage, kept by the index itself (decision 54).

What this module owns: the upkeep of ``segment_run`` beyond what the database's triggers
do (migration 0017), and its check.  A *run* is a maximal span that a camera's stored
segments of positive length cover, overlapping or touching ones joined: exactly
``index.tiling.merged_runs`` over all of them.  A report's footage reads the few runs of
its windows instead of merging thousands of segments on every call (index.report_sql).

Invariant: at every commit, each camera with no ``segment_run_dirty`` row has as its
``segment_run`` rows exactly the runs of its stored segments.  A camera with dirty rows has
the runs of a set of segments that differs from its stored ones only by segments that left
``stored`` (or moved) inside the dirty rows' spans; readers then merge its segments
themselves (the decision-48 statement), so an answer is never wrong, only slower.

Procedures:

1. *A segment becomes stored* (inserted, or set back to ``stored``): the trigger, in the
   writing transaction, joins the runs touching its span and the span into one run.  No
   segment is read; every writer is covered, a node of the previous release included.
2. *A segment leaves stored* (the sweep's garbage mark, a delete, a change of span): the
   trigger writes a dirty row.  This release's writers call :func:`settle` in the same
   transaction (retention.sweep, retention.rebuild, index.restore); what a previous
   release's node left is settled by the coverage job (index.coverage).
3. :func:`settle` for a camera, with [lo, hi] the hull of its dirty rows: the runs touching
   it are replaced by the runs of (a) the chain of segments starting before lo - MAX (one
   bounded MAX), (b) the stored segments between, (c) the chain ending after hi + MAX (one
   bounded MIN), all from ``ix_segment_stored_span``.  Both chains are contiguous: every
   instant of a run before lo - MAX is covered by a segment that starts before it, and no
   segment that left starts there (module :mod:`labwitness.segment_limits` bounds a
   segment's length by MAX).  So a sweep of a day reads that day, not a six-month run.
4. :func:`rebuild`: runs from all segments (the migration's backfill, a bulk load, a check
   that found a difference).

Locking: on PostgreSQL a transaction-level advisory lock per camera (the triggers take the
same one), cameras in sorted order; SQLite has one writer.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

from sqlalchemy.engine import Connection

from labwitness.segment_limits import MAX_SEGMENT_MS

#: the advisory lock class of a camera's runs (the migration's trigger uses the same number)
LOCK_CLASS = 1280787027

# Gaps and islands over a camera's stored segments: a segment opens a run when it starts
# after every earlier one (in start, end, id order) has ended.
_RUNS_OF_SEGMENTS = """
SELECT camera_id, MIN(start_ms), MAX(end_ms) FROM (
  SELECT camera_id, start_ms, end_ms,
         SUM(brk) OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id ROWS UNBOUNDED PRECEDING) AS run
  FROM (SELECT camera_id, id, start_ms, end_ms,
               CASE WHEN start_ms <= MAX(end_ms) OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id
                                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    THEN 0 ELSE 1 END AS brk
        FROM segment WHERE status = 'stored' AND end_ms > start_ms{cams}) AS marked) AS numbered
GROUP BY camera_id, run"""


#: every camera's runs from its segments, as one statement (bulk loaders: bench/, after a COPY
#: made with the trigger off); :func:`rebuild` is the same inside a transaction, with its locks
REBUILD_ALL_SQL = "INSERT INTO segment_run (camera_id, start_ms, end_ms) " + _RUNS_OF_SEGMENTS.format(cams="")


def _p(conn: Connection) -> str:
    return "%s" if conn.dialect.name == "postgresql" else "?"


def _rows(conn: Connection, sql: str, params: Sequence = ()) -> list[tuple]:
    return [tuple(r) for r in conn.exec_driver_sql(sql.replace("?", _p(conn)), tuple(params)).all()]


def _in(cams: Sequence[str]) -> str:
    return f"camera_id IN ({', '.join('?' * len(cams))})"


def lock(conn: Connection, cameras: Iterable[str]) -> None:
    """Hold these cameras' runs until the transaction ends (PostgreSQL; SQLite has one writer)."""
    if conn.dialect.name == "postgresql":
        for cam in sorted(set(cameras)):
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, cam))


@contextmanager
def untracked(conn: Connection) -> Iterator[None]:
    """Rows moved without changing what is stored (a month moved into its own partition):
    the PostgreSQL trigger leaves them alone for this transaction's statements inside."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        conn.exec_driver_sql("SET LOCAL labwitness.segment_runs = 'off'")
    try:
        yield
    finally:
        if pg:
            conn.exec_driver_sql("SET LOCAL labwitness.segment_runs = 'on'")


def merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans of positive length, touching or overlapping ones joined, in order."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def settle(conn: Connection, cameras: Sequence[str] | None = None) -> int:
    """Procedure 3 for every camera (or these) with dirty rows, in the caller's transaction,
    after its writes.  Returns how many cameras it settled."""
    where = f" WHERE {_in(cameras)}" if cameras else ""
    cams = [r[0] for r in _rows(conn, f"SELECT DISTINCT camera_id FROM segment_run_dirty{where}", cameras or ())]
    if not cams:
        return 0
    lock(conn, cams)
    for cam in sorted(cams):
        # read after the lock, by id: a row another transaction commits meanwhile stays for later
        dirty = _rows(conn, "SELECT id, start_ms, end_ms FROM segment_run_dirty WHERE camera_id = ?", (cam,))
        if not dirty:
            continue
        _refresh(conn, cam, min(r[1] for r in dirty), max(r[2] for r in dirty))
        ids = [r[0] for r in dirty]
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            conn.exec_driver_sql(f"DELETE FROM segment_run_dirty WHERE id IN ({', '.join(_p(conn) for _ in part)})",
                                 tuple(part))
    return len(cams)


def _refresh(conn: Connection, cam: str, lo: int, hi: int) -> None:
    runs = _rows(conn, "SELECT id, start_ms, end_ms FROM segment_run WHERE camera_id = ? AND end_ms >= ? "
                       "AND start_ms <= ? ORDER BY start_ms", (cam, lo, hi))
    x1, x2 = lo - MAX_SEGMENT_MS, hi + MAX_SEGMENT_MS
    first, last = (min(lo, runs[0][1]), max(hi, runs[-1][2])) if runs else (lo, hi)
    pieces: list[tuple[int, int]] = []
    if runs and runs[0][1] < x1:  # (a): the chain before x1 reaches from the run's start to its last end
        (e,), = _rows(conn, "SELECT MAX(end_ms) FROM segment WHERE camera_id = ? AND status = 'stored' "
                            "AND start_ms >= ? AND start_ms < ? AND end_ms > start_ms", (cam, x1 - MAX_SEGMENT_MS, x1))
        if e is None or e < x1:
            rebuild(conn, [cam])  # not what the invariant says: recompute the camera whole
            return
        pieces.append((runs[0][1], e))
    if runs and runs[-1][2] > x2:  # (c): the chain after x2, from the first start of a segment ending after it
        (s,), = _rows(conn, "SELECT MIN(start_ms) FROM segment WHERE camera_id = ? AND status = 'stored' "
                            "AND start_ms > ? AND start_ms <= ? AND end_ms > ?", (cam, x2 - MAX_SEGMENT_MS, x2, x2))
        if s is None:
            rebuild(conn, [cam])
            return
        pieces.append((s, runs[-1][2]))
    # (b): what lies between, of these runs only (a run ending before `first` is another one)
    pieces += _rows(conn, "SELECT start_ms, end_ms FROM segment WHERE camera_id = ? AND status = 'stored' "
                          "AND start_ms >= ? AND start_ms <= ? AND end_ms <= ? AND end_ms > start_ms "
                          "AND end_ms >= ? AND start_ms <= ?", (cam, x1, x2, x2, first, last))
    _replace(conn, cam, [r[0] for r in runs], merge(pieces))


def _replace(conn: Connection, cam: str, old_ids: list[int], new: list[tuple[int, int]]) -> None:
    for i in range(0, len(old_ids), 500):
        part = old_ids[i:i + 500]
        conn.exec_driver_sql(f"DELETE FROM segment_run WHERE id IN ({', '.join(_p(conn) for _ in part)})", tuple(part))
    if new:
        p = _p(conn)
        conn.exec_driver_sql(f"INSERT INTO segment_run (camera_id, start_ms, end_ms) VALUES ({p}, {p}, {p})",
                             [(cam, a, b) for a, b in new])


def expected(conn: Connection, cameras: Sequence[str] | None = None) -> dict[str, list[tuple[int, int]]]:
    """The runs the segments give, by camera (what the table must hold)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for cam, a, b in _rows(conn, _RUNS_OF_SEGMENTS.format(cams=f" AND {_in(cameras)}" if cameras else ""),
                           cameras or ()):
        out.setdefault(cam, []).append((a, b))
    return {c: sorted(v) for c, v in out.items()}


def stored(conn: Connection, cameras: Sequence[str] | None = None) -> dict[str, list[tuple[int, int]]]:
    """The table's runs, by camera."""
    out: dict[str, list[tuple[int, int]]] = {}
    where = f" WHERE {_in(cameras)}" if cameras else ""
    for cam, a, b in _rows(conn, f"SELECT camera_id, start_ms, end_ms FROM segment_run{where}", cameras or ()):
        out.setdefault(cam, []).append((a, b))
    return {c: sorted(v) for c, v in out.items()}


def differences(conn: Connection, cameras: Sequence[str] | None = None) -> list[str]:
    """Cameras whose runs differ from their segments' (none, when the invariant holds;
    a camera still dirty is compared after settling, as a reader would see it)."""
    settle(conn, cameras)
    want, have = expected(conn, cameras), stored(conn, cameras)
    return sorted(c for c in set(want) | set(have) if want.get(c) != have.get(c))


def rebuild(conn: Connection, cameras: Sequence[str] | None = None) -> int:
    """Procedure 4: these cameras' (or all) runs recomputed from their segments, in the
    caller's transaction.  Returns the number of runs written."""
    if conn.dialect.name == "postgresql":
        if cameras:
            lock(conn, cameras)
        else:  # writers' triggers wait until this commits, then add their segments to the new runs
            conn.exec_driver_sql("LOCK TABLE segment_run IN SHARE ROW EXCLUSIVE MODE")
    where = f" WHERE {_in(cameras)}" if cameras else ""
    conn.exec_driver_sql(f"DELETE FROM segment_run{where}".replace("?", _p(conn)), tuple(cameras or ()))
    conn.exec_driver_sql(f"DELETE FROM segment_run_dirty{where}".replace("?", _p(conn)), tuple(cameras or ()))
    sql = "INSERT INTO segment_run (camera_id, start_ms, end_ms) " + _RUNS_OF_SEGMENTS.format(
        cams=f" AND {_in(cameras)}" if cameras else "")
    return conn.exec_driver_sql(sql.replace("?", _p(conn)), tuple(cameras or ())).rowcount
