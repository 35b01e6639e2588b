"""Report footage's statements as SQL text (:meth:`index.records.RecordStore.report_footage`):
a report's records and cameras, and for all its windows together the kept runs with their
segment counts, the first clips, the gaps and the holds (decision 54); each built once per
dialect and window count, and run on the DB-API cursor (:func:`raw_rows`, :func:`raw_many`).

Why text and not SQLAlchemy's expression language: building and compiling the runs and
first-clips statements took 3 and 11 ms of client CPU on every call, and each small
statement ~0.6 ms, more than the database took to answer (bench/report_query).  The SQL is
plain and portable except where said (PostgreSQL: arrays, LATERAL, pipelines).
"""

from __future__ import annotations

import functools
import re
from itertools import groupby
from operator import itemgetter
from typing import Sequence

from index.queries import MAX_SEGMENT_MS, driver_errors
from index.segment_runs import HOUR_MS, hour_sql


# A report's windows (camera, start, end) are answered together, three statements for the
# whole report whatever its number of windows: the runs with their counts, the first clips,
# the gaps.  PostgreSQL takes the windows as arrays (unnest ... WITH ORDINALITY) and a
# LATERAL join per window; SQLite a UNION ALL of one branch per window.  The report's hull
# (earliest start - MAX_SEGMENT_MS, latest end) repeats as constants so that PostgreSQL
# prunes to its months at plan time.  Rows carry the window's number (1-based).
#
# The runs come from ``segment_run`` (kept by the index, decision 54), each with the count of
# its segments inside the window, counted by index-only scans of ix_segment_stored_span
# and, for the whole hours of a long span, from ``segment_hour`` (decision 56, _RUN_COUNT);
# the stored segments of no length (never part of a run) from ix_segment_stored_empty.  A
# window whose camera's runs are not settled (segment_run_dirty: a node of the previous release
# deleted footage) answers a marker row (-1) and is merged from its segments instead
# (_SEGMENT_RUNS_SQL, decision 48).  SQL text, built once per dialect and window count and
# cached: SQLAlchemy took 3 ms (runs) and 11 ms (first clips of 13 cameras) of client CPU to
# build and compile such statements on every call, more than the database took to answer.
_IN_WINDOW = "start_ms < {p} AND start_ms > {p} AND end_ms > {p} AND status = 'stored'"
_BIG_NULL = "CAST(NULL AS BIGINT)"

# A run's segments inside its window (A, B) = (max(run start, lo), min(run end, hi)): every
# stored segment of positive length that overlaps (A, B) belongs to this run, so none begins
# before the run does, nor more than the run's max_len_ms before A.  Where (A, B) holds at least
# _HOURS_FROM whole hours, those beginning in them come from segment_hour (migration 0018) and
# only those of its two partial hours, or reaching past A, from the index; a shorter span is
# counted from the index alone (three index descents cost more than the entries they spare:
# measured at 64 cameras).  {r}: the run with its columns a, b, ca (first whole hour), fb (end
# of the last), lb (earliest start that can reach past A).  CASE evaluates only the branch taken.
_HOURS_FROM = 2
_IN_RUN = """(SELECT COUNT(*) FROM segment s WHERE s.camera_id = {cam} AND s.status = 'stored'
            AND s.start_ms >= {lo} AND s.start_ms < {hi}{reach} AND s.end_ms > s.start_ms
            AND s.start_ms < :hull_hi AND s.start_ms > :hull_lo)"""
_RUN_COUNT = ("""(CASE WHEN r.fb - r.ca >= """ + str(_HOURS_FROM * HOUR_MS) + """ THEN
          (SELECT COALESCE(SUM(h.n), 0) FROM segment_hour h WHERE h.camera_id = {cam}
            AND h.hour_ms >= r.ca AND h.hour_ms < r.fb)
          + """ + _IN_RUN.format(cam="{cam}", lo="r.lb", hi="r.ca", reach=" AND s.end_ms > r.a") + """
          + """ + _IN_RUN.format(cam="{cam}", lo="r.fb", hi="r.b", reach="") + """
        ELSE """ + _IN_RUN.format(cam="{cam}", lo="r.lb", hi="r.b", reach=" AND s.end_ms > r.a") + " END)")
# the runs of a window, with the bounds _RUN_COUNT uses
_RUNS_IN = """(SELECT start_ms, end_ms, a, b, {ceil_a} AS ca, {floor_b} AS fb, {greatest}(start_ms, a - max_len_ms) AS lb
   FROM (SELECT start_ms, end_ms, max_len_ms, {greatest}(start_ms, {lo}) AS a, {least}(end_ms, {hi}) AS b
         FROM segment_run WHERE camera_id = {cam} AND end_ms > {lo} AND start_ms < {hi}{offset}) AS q) AS r"""
_EMPTY_COUNT = """(SELECT COUNT(*) FROM segment s WHERE s.camera_id = {cam} AND s.status = 'stored'
          AND s.end_ms <= s.start_ms AND s.start_ms < {hi} AND s.start_ms > {lo} - {max_ms} AND s.end_ms > {lo}
          AND s.start_ms < :hull_hi AND s.start_ms > :hull_lo)"""
_DIRTY = "EXISTS (SELECT 1 FROM segment_run_dirty d WHERE d.camera_id = {cam})"

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

_PG_WINDOWS = "unnest(:cams::text[], :los::bigint[], :his::bigint[]) WITH ORDINALITY AS w(cam, lo, hi, i)"


def _named(sql: str, dialect: str) -> str:
    """``:name`` placeholders as the driver wants them (psycopg: ``%(name)s``)."""
    if dialect != "postgresql":
        return sql
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql.replace("%", "%%"))  # a literal % (modulo) doubled


@functools.lru_cache(maxsize=256)
def runs_sql(dialect: str, n_windows: int) -> str:
    """Each window's runs with their segment counts: rows (window, run start, run end,
    segments of the run inside the window), (window, NULL, NULL, stored segments of no
    length inside it), and (window, NULL, NULL, -1) when its camera's runs are not settled.
    Parameters: :func:`window_params`."""
    m = MAX_SEGMENT_MS
    hours = dict(ceil_a=hour_sql(f"a + {HOUR_MS - 1}"), floor_b=hour_sql("b"))
    if dialect == "postgresql":
        w = dict(cam="w.cam", lo="w.lo", hi="w.hi", max_ms=m)
        fns = dict(least="LEAST", greatest="GREATEST")
        sql = (f"SELECT w.i, r.start_ms, r.end_ms, {_RUN_COUNT.format(**fns, **w)} "
               # LATERAL with OFFSET 0 (kept a subquery): an index range scan per window; joined
               # flat, the planner hashed every run of every camera (0.5 ms at 64 cameras, growing)
               f"FROM {_PG_WINDOWS} CROSS JOIN LATERAL {_RUNS_IN.format(offset=' OFFSET 0', **fns, **hours, **w)} "
               f"UNION ALL SELECT w.i, {_BIG_NULL}, {_BIG_NULL}, {_EMPTY_COUNT.format(**w)} FROM {_PG_WINDOWS} "
               f"UNION ALL SELECT w.i, {_BIG_NULL}, {_BIG_NULL}, -1 FROM {_PG_WINDOWS} WHERE {_DIRTY.format(**w)} "
               f"ORDER BY 1, 2")
        return _named(sql, dialect)
    parts = []
    for i in range(n_windows):
        w = dict(cam=f":c{i}", lo=f":lo{i}", hi=f":hi{i}", max_ms=m)
        fns = dict(least="min", greatest="max")
        parts += [f"SELECT {i + 1}, r.start_ms, r.end_ms, {_RUN_COUNT.format(**fns, **w)} "
                  f"FROM {_RUNS_IN.format(offset='', **fns, **hours, **w)}",
                  f"SELECT {i + 1}, NULL, NULL, {_EMPTY_COUNT.format(**w)}",
                  f"SELECT {i + 1}, NULL, NULL, -1 WHERE {_DIRTY.format(**w)}"]
    return " UNION ALL ".join(parts) + " ORDER BY 1, 2"


# whether a listed clip is held for an export of the report: one probe of ix_hold_segment_id per
# clip listed, where reading the report's holds would fetch every held segment of an exported
# report (tens of thousands for a long multi-camera test) to mark a few hundred clips
_HELD = ("EXISTS (SELECT 1 FROM hold h JOIN export_package p ON p.id = h.package_id WHERE h.segment_id = {seg}.id "
         "AND h.released_ms IS NULL AND p.report_no = :report_no)")


@functools.lru_cache(maxsize=256)
def first_clips_sql(dialect: str, n_windows: int, held: bool = False) -> str:
    """The first N clips (segment id, start, end, sha256) of each window, one index range scan
    with a limit per window: rows (window, id, start, end, sha256[, held]) in each window's order
    (start, then id).  Parameters: :func:`window_params`, ``n`` and, with ``held``, ``report_no``."""
    cond = ("camera_id = {cam} AND start_ms < {hi} AND start_ms > {lo} - " + str(MAX_SEGMENT_MS) +
            " AND end_ms > {lo} AND status = 'stored' AND start_ms < :hull_hi AND start_ms > :hull_lo")
    # (bounding the look-back by the run's max_len_ms, as the counts do, measured slower here: one
    # more index descent per window costs more than the ~40 index entries it spares, in the same pages)
    if dialect == "postgresql":
        flag = ", " + _HELD.format(seg="s") if held else ""
        sql = (f"SELECT w.i, s.id, s.start_ms, s.end_ms, s.sha256{flag} FROM {_PG_WINDOWS} "
               f"CROSS JOIN LATERAL (SELECT id, start_ms, end_ms, sha256 FROM segment "
               f"WHERE {cond.format(cam='w.cam', lo='w.lo', hi='w.hi')} ORDER BY start_ms, id LIMIT :n) AS s "
               f"ORDER BY 1, 3, 2")
        return _named(sql, dialect)
    flag = ", " + _HELD.format(seg="segment") if held else ""
    one = ("SELECT * FROM (SELECT {i} AS w, id, start_ms, end_ms, sha256" + flag + " FROM segment WHERE " + cond +
           " ORDER BY start_ms, id LIMIT :n)")
    return " UNION ALL ".join(one.format(i=i + 1, cam=f":c{i}", lo=f":lo{i}", hi=f":hi{i}")
                              for i in range(n_windows)) + " ORDER BY 1, 3, 2"


@functools.lru_cache(maxsize=256)
def gaps_sql(dialect: str, n_windows: int) -> str:
    """The recorded gaps overlapping each window: rows (window, start, end, reason) by start."""
    cond = "g.camera_id = {cam} AND g.start_ms < {hi} AND g.end_ms > {lo}"
    if dialect == "postgresql":
        return _named(f"SELECT w.i, g.start_ms, g.end_ms, g.reason FROM {_PG_WINDOWS} JOIN gap g ON "
                      f"{cond.format(cam='w.cam', lo='w.lo', hi='w.hi')} AND g.start_ms < :hull_hi "
                      f"ORDER BY 1, 2", dialect)
    return " UNION ALL ".join(
        f"SELECT {i + 1}, g.start_ms, g.end_ms, g.reason FROM gap g WHERE "
        f"{cond.format(cam=f':c{i}', lo=f':lo{i}', hi=f':hi{i}')}" for i in range(n_windows)) + " ORDER BY 1, 2"


@functools.lru_cache(maxsize=256)
def segment_runs_sql(dialect: str, n_cams: int) -> str:
    """One window's stored segments merged into runs by the database (gaps and islands),
    for cameras whose kept runs are not settled: a segment starts a new run when it starts
    after every earlier one of its camera has ended, exactly as
    ``index.tiling.merged_runs`` joins touching or overlapping spans.  Rows: (camera_id,
    run start, run end, segments of positive length, segments); a group with a NULL start
    holds only zero-length segments.  Parameters: the cameras, then hi, lo - MAX, lo."""
    p = "%s" if dialect == "postgresql" else "?"
    cams = "camera_id = ANY(%s)" if dialect == "postgresql" else f"camera_id IN ({', '.join('?' * n_cams)})"
    return _SEGMENT_RUNS_SQL.format(cams=cams, window=_IN_WINDOW.format(p=p))


Window = tuple[str, int, int]  # camera, start, end


def window_params(dialect: str, windows: Sequence[Window]) -> dict:
    """The windows as parameters, with the report's hull (for pruning)."""
    out: dict = {"hull_lo": min(w[1] for w in windows) - MAX_SEGMENT_MS, "hull_hi": max(w[2] for w in windows)}
    if dialect == "postgresql":
        out.update(cams=[w[0] for w in windows], los=[w[1] for w in windows], his=[w[2] for w in windows])
    else:
        for i, (cam, lo, hi) in enumerate(windows):
            out.update({f"c{i}": cam, f"lo{i}": lo, f"hi{i}": hi})
    return out


def _by_window(rows, windows: Sequence[Window]) -> dict[Window, list[tuple]]:
    out: dict[Window, list[tuple]] = {}
    for i, group in groupby(rows, key=itemgetter(0)):
        out[windows[i - 1]] = [r[1:] for r in group]
    return out


def _runs_of(rows, windows: Sequence[Window]) -> tuple[dict, list[Window]]:
    out: dict[Window, tuple[list[tuple[int, int]], list[int], int]] = {}
    unsettled: list[Window] = []
    for w, group in _by_window(rows, windows).items():
        if any(n == -1 for a, _, n in group if a is None):
            unsettled.append(w)
            continue
        runs = [(max(a, w[1]), min(b, w[2])) for a, b, _ in group if a is not None]
        out[w] = (runs, [n for a, _, n in group if a is not None], sum(n for _, _, n in group))
    return out, unsettled


_HOLDS_SQL = ("SELECT hold.segment_id FROM hold JOIN export_package ON export_package.id = hold.package_id "
              "WHERE export_package.report_no = {p} AND hold.released_ms IS NULL")


def holds_sql(dialect: str) -> str:
    return sql_text(_HOLDS_SQL, dialect)


def report_windows(conn, windows: Sequence[Window], clip_page: int, holds_of: str | None = None):
    """Everything a paged report reads per window, sent together (PostgreSQL: one round
    trip, :func:`raw_many`): ({window: (runs clipped to it, segments of positive length per
    run, all its segments)}, {window: first ``clip_page`` clips (id, start, end, sha256)},
    {window: gaps (start, end, reason)}, ids of the listed clips held for report ``holds_of``).
    A window whose camera's runs are not settled is merged from its segments (decision 48)."""
    if not windows:
        return {}, {}, {}, set()
    d = conn.dialect.name
    params = window_params(d, windows)
    stmts = [(runs_sql(d, len(windows)), params), (gaps_sql(d, len(windows)), params)]
    marked = holds_of is not None
    if clip_page > 0:
        stmts.append((first_clips_sql(d, len(windows), marked),
                      {**params, "n": clip_page, **({"report_no": holds_of} if marked else {})}))
    got = raw_many(conn, stmts)
    runs_of, unsettled = _runs_of(got[0], windows)
    for cam, lo, hi in unsettled:
        p = (([cam],) if d == "postgresql" else (cam,)) + (hi, lo - MAX_SEGMENT_MS, lo)
        runs_of[(cam, lo, hi)] = runs_from_rows(raw_rows(conn, segment_runs_sql(d, 1), p), lo, hi)
    clips, held = {}, set()
    if clip_page > 0:
        rows = got[2]
        if marked:
            held = {r[1] for r in rows if r[5]}
            rows = [r[:5] for r in rows]
        clips = _by_window(rows, windows)
    return runs_of, clips, _by_window(got[1], windows), held


def report_gaps(conn, windows: Sequence[Window]) -> dict[Window, list[tuple]]:
    """Each window's recorded gaps (start, end, reason)."""
    if not windows:
        return {}
    d = conn.dialect.name
    return _by_window(raw_rows(conn, gaps_sql(d, len(windows)), window_params(d, windows)), windows)


# A report's records and the cameras of their areas and instruments (with each camera's
# registration), read together: the cameras are resolved from the records' JSON lists in SQL,
# so both statements go in one round trip.  Rows (kind, key, camera, created_ms): 'a' the
# cameras of an area, 'l' the cameras linked to an instrument, 'e' the cameras of an
# instrument's area (used for an instrument no camera is linked to).
_RECORDS_SQL = "SELECT * FROM test_record WHERE report_no = {p} ORDER BY started_ms"
_CAMERAS_SQL = """
SELECT 'a', a.{v}, c.id, c.created_ms FROM test_record t {areas} JOIN camera c ON c.area_id = a.{v} WHERE t.report_no = {no}
UNION ALL
SELECT 'l', e.{v}, ec.camera_id, c.created_ms FROM test_record t {eqs}
  JOIN equipmentcamera ec ON ec.equipment_id = e.{v} LEFT JOIN camera c ON c.id = ec.camera_id WHERE t.report_no = {no}
UNION ALL
SELECT 'e', e.{v}, c.id, c.created_ms FROM test_record t {eqs}
  JOIN equipment q ON q.id = e.{v} JOIN camera c ON c.area_id = q.area_id WHERE t.report_no = {no}"""


@functools.lru_cache(maxsize=4)
def cameras_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return _CAMERAS_SQL.format(v="v", no="%s",
                                   areas="CROSS JOIN LATERAL json_array_elements_text(t.area_ids::json) AS a(v)",
                                   eqs="CROSS JOIN LATERAL json_array_elements_text(t.equipment_ids::json) AS e(v)")
    return _CAMERAS_SQL.format(v="value", no="?", areas="JOIN json_each(t.area_ids) AS a",
                               eqs="JOIN json_each(t.equipment_ids) AS e")


def report_records(conn, report_no: str) -> tuple[list, list[tuple]]:
    """(the report's test records, oldest first, with attribute access by column; the camera
    rows of :data:`_CAMERAS_SQL`) — one round trip on PostgreSQL."""
    d = conn.dialect.name
    records, cams = raw_many(conn, [(sql_text(_RECORDS_SQL, d), (report_no,)),
                                    (cameras_sql(d), (report_no,) * 3)], named=(0,))
    return records, cams


def raw_many(conn, stmts: Sequence[tuple[str, tuple | dict]], named: Sequence[int] = ()) -> list[list]:
    """The rows of several independent statements (those listed in ``named``: rows with
    attribute access by column name).  PostgreSQL: sent in one round trip (psycopg's
    pipeline mode), so a report's window statements cost one wait for the server, not one
    each; SQLite (in-process): one after the other."""
    if conn.dialect.name != "postgresql":
        return [conn.exec_driver_sql(sql, params).all() if i in named else raw_rows(conn, sql, params)
                for i, (sql, params) in enumerate(stmts)]
    from psycopg.rows import namedtuple_row  # only with PostgreSQL

    pg = conn.connection.driver_connection
    curs = [pg.cursor(row_factory=namedtuple_row) if i in named else pg.cursor() for i in range(len(stmts))]
    try:
        with driver_errors(conn.dialect, stmts[0][0], stmts[0][1]):
            with pg.pipeline():
                for cur, (sql, params) in zip(curs, stmts, strict=True):
                    cur.execute(sql, params)
            return [cur.fetchall() for cur in curs]
    finally:
        for cur in curs:
            cur.close()


def raw_rows(conn, sql: str, params: tuple | dict) -> list[tuple]:
    cur = conn.connection.cursor()
    try:
        with driver_errors(conn.dialect, sql, params):
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        cur.close()


def runs_from_rows(rows, lo: int, hi: int) -> tuple[list[tuple[int, int]], list[int], int]:
    """(runs clipped to [lo, hi), positive-length segments per run, all segments)
    from :func:`segment_runs_sql`'s rows of one camera (a window whose kept runs are not settled)."""
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


@functools.lru_cache(maxsize=64)
def sql_text(template: str, dialect: str) -> str:
    """``template`` with each ``{p}`` the driver's placeholder."""
    return template.format(p="%s" if dialect == "postgresql" else "?")
