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


# The two statements of a paged report are written out as SQL text, built once per
# dialect and camera count and cached: SQLAlchemy took 3 ms (runs) and 11 ms (first
# clips of 13 cameras) of client CPU to build and compile them on every call, more
# than the database took to answer (bench/report_query).  Both are plain SQL that
# SQLite (>= 3.25, window functions) and PostgreSQL run alike, but for the first
# clips, where PostgreSQL takes one LATERAL join over an array and SQLite a UNION ALL.
_IN_WINDOW = "start_ms < {p} AND start_ms > {p} AND end_ms > {p} AND status = 'stored'"

_RUNS_SQL = """
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


@functools.lru_cache(maxsize=256)
def runs_sql(dialect: str, n_cams: int) -> str:
    """The window's stored segments merged into runs by the database (gaps and
    islands): a segment starts a new run when it starts after every earlier one of
    its camera has ended, exactly as ``index.tiling.merged_runs`` joins touching or
    overlapping spans.  Rows: (camera_id, run start, run end, segments of positive
    length, segments) by camera and start; a group with a NULL start holds only
    zero-length segments (counted, never covering anything).  The id breaks ties so
    both window functions number the rows in one order.  Parameters: the cameras,
    then :func:`window_params`."""
    p = "%s" if dialect == "postgresql" else "?"
    cams = "camera_id = ANY(%s)" if dialect == "postgresql" else f"camera_id IN ({', '.join('?' * n_cams)})"
    return _RUNS_SQL.format(cams=cams, window=_IN_WINDOW.format(p=p))


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
    d = conn.dialect.name
    cams = (list(cameras),) if d == "postgresql" else tuple(cameras)
    return raw_rows(conn, runs_sql(d, len(cameras)), cams + window_params(lo, hi))


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
