"""Report footage's statements as SQL text (:meth:`index.records.RecordStore.report_footage`):
the window's segments merged into runs by the database, the first clips of each camera,
and the fixed statements of a report, each built once per dialect and parameter count.

Why text and not SQLAlchemy's expression language: building and compiling the runs and
first-clips statements took 3 and 11 ms of client CPU on every call, and each small
statement ~0.6 ms, more than the database took to answer (bench/report_query).  The SQL is
plain and portable (window functions: SQLite >= 3.25) except where said.
"""

from __future__ import annotations

import functools
from typing import Sequence

from index.queries import MAX_SEGMENT_MS


# A report's runs come from ``segment_run`` (kept by the index, decision 54), each with the
# count of its segments inside the window, counted from the partial index
# ix_segment_stored_span alone; the stored segments of no length (never part of a run) from
# ix_segment_stored_empty.  A camera with runs not settled yet (segment_run_dirty: a node of
# the previous release deleted footage) answers a marker row, and its window is merged from
# its segments instead (_SEGMENT_RUNS_SQL, decision 48).  Written as SQL text, built once per
# dialect and camera count and cached: SQLAlchemy took 3 ms (runs) and 11 ms (first clips of
# 13 cameras) of client CPU to build and compile such statements on every call, more than
# the database took to answer (bench/report_query).
_IN_WINDOW = "start_ms < {p} AND start_ms > {p} AND end_ms > {p} AND status = 'stored'"

_RUNS_SQL = """
SELECT r.camera_id, r.start_ms, r.end_ms,
       (SELECT COUNT(*) FROM segment s WHERE s.camera_id = r.camera_id AND s.status = 'stored'
          AND s.start_ms < {least}(r.end_ms, {hi}) AND s.start_ms > {greatest}(r.start_ms, {lo}) - {max_ms}
          AND s.end_ms > {greatest}(r.start_ms, {lo}) AND s.end_ms > s.start_ms
          AND s.start_ms < {hi} AND s.start_ms > {lo_bound})
FROM segment_run r WHERE r.{cams} AND r.end_ms > {lo} AND r.start_ms < {hi}
UNION ALL
SELECT camera_id, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), COUNT(*) FROM segment
WHERE {cams} AND status = 'stored' AND end_ms <= start_ms AND start_ms < {hi} AND start_ms > {lo_bound} AND end_ms > {lo}
GROUP BY camera_id
UNION ALL
SELECT DISTINCT camera_id, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), -1 FROM segment_run_dirty WHERE {cams}
ORDER BY 1, 2"""

_SEGMENT_RUNS_SQL = """
SELECT camera_id, MIN(CASE WHEN pos = 1 THEN start_ms END), MAX(CASE WHEN pos = 1 THEN end_ms END), SUM(pos), COUNT(*)
FROM (SELECT camera_id, start_ms, end_ms, pos,
             SUM(brk) OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
      FROM (SELECT camera_id, id, start_ms, end_ms,
                   CASE WHEN end_ms > start_ms THEN 1 ELSE 0 END AS pos,
                   CASE WHEN end_ms <= start_ms THEN 0
                        WHEN start_ms <= MAX(CASE WHEN end_ms > start_ms THEN end_ms END)
                             OVER (PARTITION BY camera_id ORDER BY start_ms, end_ms, id
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) THEN 0
                        ELSE 1 END AS brk
            FROM segment WHERE {cams} AND {window}) AS marked) AS numbered
GROUP BY camera_id, run ORDER BY camera_id, run"""


def _cams(dialect: str, n_cams: int) -> str:
    return "camera_id = ANY(%(cams)s)" if dialect == "postgresql" else \
        f"camera_id IN ({', '.join(f':c{i}' for i in range(n_cams))})"


@functools.lru_cache(maxsize=256)
def runs_sql(dialect: str, n_cams: int) -> str:
    """The window's runs with their segment counts: rows (camera_id, run start, run end,
    segments of the run inside the window), (camera_id, NULL, NULL, stored segments of no
    length inside the window), and (camera_id, NULL, NULL, -1) for a camera whose runs are
    not settled.  Named parameters: cams, lo, hi, lo_bound (:func:`run_params`).  The
    window's own bounds repeat inside the count so that PostgreSQL prunes to its months."""
    if dialect == "postgresql":
        names = {k: f"%({k})s" for k in ("lo", "hi", "lo_bound")}
        return _RUNS_SQL.format(cams=_cams(dialect, n_cams), least="LEAST", greatest="GREATEST",
                                max_ms=MAX_SEGMENT_MS, **names)
    names = {k: f":{k}" for k in ("lo", "hi", "lo_bound")}
    return _RUNS_SQL.format(cams=_cams(dialect, n_cams), least="min", greatest="max", max_ms=MAX_SEGMENT_MS,
                            **names)


def run_params(dialect: str, cameras: Sequence[str], lo: int, hi: int) -> dict:
    out: dict = {"lo": lo, "hi": hi, "lo_bound": lo - MAX_SEGMENT_MS}
    if dialect == "postgresql":
        out["cams"] = list(cameras)
    else:
        out.update({f"c{i}": c for i, c in enumerate(cameras)})
    return out


@functools.lru_cache(maxsize=256)
def segment_runs_sql(dialect: str, n_cams: int) -> str:
    """The window's stored segments merged into runs by the database (gaps and islands),
    for cameras whose kept runs are not settled: a segment starts a new run when it starts
    after every earlier one of its camera has ended, exactly as
    ``index.tiling.merged_runs`` joins touching or overlapping spans.  Rows: (camera_id,
    run start, run end, segments of positive length, segments); a group with a NULL start
    holds only zero-length segments.  Parameters: the cameras, then :func:`window_params`."""
    p = "%s" if dialect == "postgresql" else "?"
    cams = "camera_id = ANY(%s)" if dialect == "postgresql" else f"camera_id IN ({', '.join('?' * n_cams)})"
    return _SEGMENT_RUNS_SQL.format(cams=cams, window=_IN_WINDOW.format(p=p))


@functools.lru_cache(maxsize=256)
def first_clips_sql(dialect: str, n_cams: int) -> str:
    """The first N clips of each camera in the window, one index range scan with a
    limit per camera.  Parameters: PostgreSQL (cameras, window, N); SQLite
    (camera, window, N) per camera."""
    cols = "camera_id, id, start_ms, end_ms, sha256"
    if dialect == "postgresql":
        return (f"SELECT c.cam, s.id, s.start_ms, s.end_ms, s.sha256 FROM unnest(%s::text[]) AS c(cam) "
                f"CROSS JOIN LATERAL (SELECT id, start_ms, end_ms, sha256 FROM segment "
                f"WHERE camera_id = c.cam AND {_IN_WINDOW.format(p='%s')} ORDER BY start_ms, id LIMIT %s) AS s "
                f"ORDER BY c.cam, s.start_ms, s.id")
    one = f"SELECT * FROM (SELECT {cols} FROM segment WHERE camera_id = ? AND {_IN_WINDOW.format(p='?')} " \
          f"ORDER BY start_ms, id LIMIT ?)"
    return " UNION ALL ".join([one] * n_cams) + " ORDER BY 1, 3, 2"


def window_params(lo: int, hi: int) -> tuple[int, int, int]:
    """Stored segments overlapping [lo, hi): the bounded lower edge (no segment is
    longer than MAX_SEGMENT_MS) keeps it an index range scan on (camera_id, start_ms)."""
    return hi, lo - MAX_SEGMENT_MS, lo


def runs_rows(conn, cameras: Sequence[str], lo: int, hi: int) -> list[tuple]:
    """Rows (camera_id, run start, run end, positive-length segments, segments) by camera
    and start, clipped to nothing yet (:func:`runs_from_rows` clips): the kept runs, and for
    a camera whose runs are not settled, its segments merged here."""
    d = conn.dialect.name
    out: list[tuple] = []
    unsettled: list[str] = []
    for cam, a, b, n in raw_rows(conn, runs_sql(d, len(cameras)), run_params(d, cameras, lo, hi)):
        if n == -1:
            unsettled.append(cam)
        elif a is None:
            out.append((cam, None, None, 0, n))
        else:
            out.append((cam, a, b, n, n))
    if unsettled:
        out = [r for r in out if r[0] not in unsettled]
        cams = (list(unsettled),) if d == "postgresql" else tuple(unsettled)
        out += raw_rows(conn, segment_runs_sql(d, len(unsettled)), cams + window_params(lo, hi))
        out.sort(key=lambda r: (r[0], r[1] is None, r[1] or 0))
    return out


def first_clips_rows(conn, cameras: Sequence[str], lo: int, hi: int, n: int) -> list[tuple]:
    d = conn.dialect.name
    if d == "postgresql":
        params: tuple = (list(cameras), *window_params(lo, hi), n)
    else:
        params = tuple(x for cam in cameras for x in (cam, *window_params(lo, hi), n))
    return raw_rows(conn, first_clips_sql(d, len(cameras)), params)


def raw_rows(conn, sql: str, params: tuple) -> list[tuple]:
    cur = conn.connection.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchall()
    finally:
        cur.close()


def runs_from_rows(rows, lo: int, hi: int) -> tuple[list[tuple[int, int]], list[int], int]:
    """(runs clipped to [lo, hi), positive-length segments per run, all segments)
    from :func:`_runs_statement`'s rows of one camera."""
    runs: list[tuple[int, int]] = []
    per_run: list[int] = []
    total = 0
    for _, a, b, n_pos, n in rows:
        total += n
        if a is None:
            continue
        runs.append((a, b))
        per_run.append(int(n_pos))
    if runs:  # only the first run can start before the window and only the last end after it
        runs[0] = (max(runs[0][0], lo), runs[0][1])
        runs[-1] = (runs[-1][0], min(runs[-1][1], hi))
    return runs, per_run, total


@functools.lru_cache(maxsize=1024)
def sql_text(template: str, dialect: str, n_in: int) -> str:
    p = "%s" if dialect == "postgresql" else "?"
    return template.format(p=p, **{"in": ", ".join([p] * n_in)})


def sql_rows(conn, template: str, params: Sequence, n_in: int | None = None) -> list:
    """Rows (attribute access by column name) of a statement written as SQL text:
    ``{p}`` a placeholder, ``{in}`` ``n_in`` of them (default: one per parameter).
    For report footage's fixed statements, run once per report or per window:
    building and compiling them with SQLAlchemy's expression language cost ~0.6 ms of
    client CPU each, several times what the database took (bench/report_query)."""
    sql = sql_text(template, conn.dialect.name, len(params) if n_in is None else n_in)
    return conn.exec_driver_sql(sql, tuple(params)).all()
