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

Hours (migration 0018, decision 56): ``segment_hour`` holds, per camera and UTC hour of
segment start, the number of stored segments of positive length; the same triggers add 1
when a segment becomes stored and take 1 away when it leaves (a row whose count reaches 0
is deleted), so it is exact at every commit, dirty runs or not, and no settle is needed.
Each run's ``max_len_ms`` is at least the length of its longest segment: the trigger takes
the maximum as it joins, a settle keeps the replaced runs' bound (segments only left), a
rebuild computes it.  A report uses both (index.report_sql): whole hours from
``segment_hour``, and segments reaching into a window from at most ``max_len_ms`` before it.

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
#: the span ``segment_hour`` counts by (migration 0018 repeats it)
HOUR_MS = 3_600_000


def hour_sql(x: str) -> str:
    """SQL for the UTC hour (epoch ms) of ``x``, flooring on both databases (their % truncates
    toward zero); the same as ``ms - ms % HOUR_MS`` in Python."""
    return f"(({x}) - ((({x}) % {HOUR_MS}) + {HOUR_MS}) % {HOUR_MS})"


# Gaps and islands over a camera's stored segments: a segment opens a run when it starts
# after every earlier one (in start, end, id order) has ended.
_RUNS_OF_SEGMENTS = """
SELECT camera_id, MIN(start_ms), MAX(end_ms), MAX(end_ms - start_ms) FROM (
  SELECT camera_id, start_ms, end_ms,
         SUM(brk) OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id ROWS UNBOUNDED PRECEDING) AS run
  FROM (SELECT camera_id, id, start_ms, end_ms,
               CASE WHEN start_ms <= MAX(end_ms) OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id
                                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    THEN 0 ELSE 1 END AS brk
        FROM segment WHERE status = 'stored' AND end_ms > start_ms{cams}) AS marked) AS numbered
GROUP BY camera_id, run"""


_HOURS_OF_SEGMENTS = ("SELECT camera_id, " + hour_sql("start_ms") + ", COUNT(*) FROM segment "
                      "WHERE status = 'stored' AND end_ms > start_ms{cams} GROUP BY 1, 2")
_INSERT_RUNS = "INSERT INTO segment_run (camera_id, start_ms, end_ms, max_len_ms) "
_INSERT_HOURS = "INSERT INTO segment_hour (camera_id, hour_ms, n) "

#: every camera's runs and hours from its segments, as statements (bulk loaders: bench/, after
#: a COPY made with the trigger off, into empty tables); :func:`rebuild` is the same inside a
#: transaction, with its locks
REBUILD_ALL_SQL = (_INSERT_RUNS + _RUNS_OF_SEGMENTS.format(cams=""), _INSERT_HOURS + _HOURS_OF_SEGMENTS.format(cams=""))


def _p(conn: Connection) -> str:
    return "%s" if conn.dialect.name == "postgresql" else "?"


def _sql(conn: Connection, sql: str) -> str:
    """``?`` placeholders (and a literal ``%``, the modulo of :func:`hour_sql`) as the driver wants them."""
    return sql.replace("%", "%%").replace("?", "%s") if conn.dialect.name == "postgresql" else sql


def _rows(conn: Connection, sql: str, params: Sequence = ()) -> list[tuple]:
    return [tuple(r) for r in conn.exec_driver_sql(_sql(conn, sql), tuple(params)).all()]


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
    runs = _rows(conn, "SELECT id, start_ms, end_ms, max_len_ms FROM segment_run WHERE camera_id = ? "
                       "AND end_ms >= ? AND start_ms <= ? ORDER BY start_ms", (cam, lo, hi))
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
    between = _rows(conn, "SELECT start_ms, end_ms FROM segment WHERE camera_id = ? AND status = 'stored' "
                          "AND start_ms >= ? AND start_ms <= ? AND end_ms <= ? AND end_ms > start_ms "
                          "AND end_ms >= ? AND start_ms <= ?", (cam, x1, x2, x2, first, last))
    # segments only left these runs (an entering one is joined by the trigger, which keeps the
    # bound): the replaced runs' bound still holds for what is left of them
    bound = max([r[3] for r in runs] + [b - a for a, b in between] + [0])
    _replace(conn, cam, [r[0] for r in runs], [(a, b, bound) for a, b in merge(pieces + between)])


def _replace(conn: Connection, cam: str, old_ids: list[int], new: list[tuple[int, int, int]]) -> None:
    for i in range(0, len(old_ids), 500):
        part = old_ids[i:i + 500]
        conn.exec_driver_sql(f"DELETE FROM segment_run WHERE id IN ({', '.join(_p(conn) for _ in part)})", tuple(part))
    if new:
        p = _p(conn)
        conn.exec_driver_sql(f"{_INSERT_RUNS}VALUES ({p}, {p}, {p}, {p})", [(cam, a, b, m) for a, b, m in new])


def expected(conn: Connection, cameras: Sequence[str] | None = None) -> dict[str, list[tuple[int, int]]]:
    """The runs the segments give, by camera (what the table must hold)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for cam, a, b, _ in _rows(conn, _RUNS_OF_SEGMENTS.format(cams=f" AND {_in(cameras)}" if cameras else ""),
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


def expected_hours(conn: Connection, cameras: Sequence[str] | None = None) -> dict[tuple[str, int], int]:
    """{(camera, hour): stored segments of positive length starting in it} from the segments."""
    rows = _rows(conn, _HOURS_OF_SEGMENTS.format(cams=f" AND {_in(cameras)}" if cameras else ""), cameras or ())
    return {(c, h): n for c, h, n in rows}


def stored_hours(conn: Connection, cameras: Sequence[str] | None = None) -> dict[tuple[str, int], int]:
    """``segment_hour`` as {(camera, hour): count}."""
    where = f" WHERE {_in(cameras)}" if cameras else ""
    return {(c, h): n for c, h, n in _rows(conn, f"SELECT camera_id, hour_ms, n FROM segment_hour{where}",
                                           cameras or ())}


def short_bounds(conn: Connection, cameras: Sequence[str] | None = None) -> list[tuple[str, int, int]]:
    """Runs whose ``max_len_ms`` is shorter than one of their stored segments (camera, run
    start, longest segment): none, when the invariant holds."""
    cams = f" AND r.{_in(cameras)}" if cameras else ""
    return _rows(conn, "SELECT r.camera_id, r.start_ms, MAX(s.end_ms - s.start_ms) FROM segment_run r "
                       "JOIN segment s ON s.camera_id = r.camera_id AND s.status = 'stored' AND s.end_ms > s.start_ms "
                       f"AND s.start_ms >= r.start_ms AND s.start_ms < r.end_ms WHERE 1 = 1{cams} "
                       "GROUP BY r.id, r.camera_id, r.start_ms, r.max_len_ms HAVING MAX(s.end_ms - s.start_ms) > r.max_len_ms",
                 cameras or ())


def differences(conn: Connection, cameras: Sequence[str] | None = None) -> list[str]:
    """Cameras whose runs, run bounds or hour counts differ from what their segments give
    (none, when the invariant holds; a camera still dirty is compared after settling, as a
    reader would see it)."""
    settle(conn, cameras)
    want, have = expected(conn, cameras), stored(conn, cameras)
    bad = {c for c in set(want) | set(have) if want.get(c) != have.get(c)}
    hw, hh = expected_hours(conn, cameras), stored_hours(conn, cameras)
    bad |= {k[0] for k in set(hw) | set(hh) if hw.get(k) != hh.get(k)}
    bad |= {c for c, _, _ in short_bounds(conn, cameras)}
    return sorted(bad)


def rebuild(conn: Connection, cameras: Sequence[str] | None = None) -> int:
    """Procedure 4: these cameras' (or all) runs recomputed from their segments, in the
    caller's transaction (the hours need no such step: the triggers keep them exact).
    Returns the number of runs written."""
    if conn.dialect.name == "postgresql":
        if cameras:
            lock(conn, cameras)
        else:  # writers' triggers wait until this commits, then add their segments to the new runs
            conn.exec_driver_sql("LOCK TABLE segment_run IN SHARE ROW EXCLUSIVE MODE")
    where = f" WHERE {_in(cameras)}" if cameras else ""
    also = f" AND {_in(cameras)}" if cameras else ""
    for table in ("segment_run", "segment_run_dirty"):
        conn.exec_driver_sql(_sql(conn, f"DELETE FROM {table}{where}"), tuple(cameras or ()))
    sql = _INSERT_RUNS + _RUNS_OF_SEGMENTS.format(cams=also)
    return conn.exec_driver_sql(_sql(conn, sql), tuple(cameras or ())).rowcount
