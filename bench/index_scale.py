"""The index at scale on PostgreSQL with monthly partitions (issue 16 §2).

    python -m bench.index_scale [--cameras 256] [--days 183] [--queries 1000] [--health-runs 10]
                                [--http-runs 20] [--compliance-runs 3] [--records 50000] [--keep]
                                [--pg-url URL] [--parts report,coverage,health,http,compliance]

Builds the synthetic lab of ``bench.report_query`` (N cameras x D days of 1-minute
segments: 256 x 183 ≈ 67 M rows, gaps, areas, instruments, test records) in a throwaway
PostgreSQL database ``lw_scale_<random>`` (dropped at the end unless ``--keep``) through the
project's own migrations — so ``segment`` and ``gap`` are partitioned by month (migration
0015) — then:

1. **Load**: the lab's months get their partitions (``index.partitions.create_month``), the
   secondary indexes are dropped, rows go in with ``COPY … FROM STDIN``, the indexes are
   re-created from the migrations' own definitions (on the partitioned parent: one build
   per partition), the runs of stored footage computed once (the COPY ran with their
   trigger off, migration 0017), ``VACUUM (ANALYZE)`` (what autovacuum does for a live index:
   pages all-visible, so a report counts a run's segments from the index alone).
2. **Report footage**: ``bench.report_query.measure`` (the product path,
   ``RecordStore.report_footage`` + the response body, warm; goal p99 < 20 ms) and the
   partitions the segment range query of a real report touches under ``EXPLAIN``.
3. **Coverage rollup**: a *full* rollup from scratch (every closed day of every camera, at
   the lab's end minus one day), then *incremental* refreshes: the next day (what the
   scheduled refresh does after midnight: one new day per camera), nothing new (what it
   does every 10 minutes), and after 100 late segments indexed into old days of 10 cameras.
4. **Health over all cameras**: ``retention.health.gather`` + ``classify`` with the rollup
   in place (the in-process figure, the baseline of 5.), at the lab's "now" (midnight) and at
   23:59 (a whole day live).
5. **``GET /api/v1/health`` over HTTP** (goal p50 and p99 < 500 ms): the app of the project's
   factory on a ``Runtime`` (api role) over the same database, served by uvicorn on 127.0.0.1,
   an operations token (``bench.served``), at midnight and 23:59.
6. **The monthly compliance report** of the last complete month for every camera (goal < 5 s):
   ``GET /api/v1/compliance?month=…`` on the same served app (what ``labwitness report
   compliance`` computes: ``retention.compliance.compliance_report``, plus the JSON body), and
   ``compliance_report`` alone in process.

``--parts`` picks parts 2-6 (``report,coverage,health,http,compliance``; default all), so a
database kept with ``--keep`` is re-measured with ``--pg-url URL --parts health,http,compliance``
without rebuilding the rollup (part 3 drops it and rolls six months up again).

The machine's load (``os.getloadavg``) is recorded before and after each part: this box is
shared.  Results: ``bench/out/index_scale-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid

from sqlalchemy import create_engine, text

from bench.health import _health_once
from bench.served import served, timed_gets
from bench.report_query import (OUT, PG_ADMIN_URL, Lab, _capture_footage_sql, _insert_registry, _pg_dsn,
                                copy_lab, measure, rebuild_runs)
from index.coverage import CoverageStore
from index.db import make_engine
from index.migrate import upgrade
from index.partitions import add_months, create_month, month_start, partitions
from labwitness.clock import DAY_MS

GOALS = {"report_p99_ms": 20.0, "health_s": 1.0, "http_health_s": 0.5, "compliance_s": 5.0}
PARTS = ("report", "coverage", "health", "http", "compliance")


def _log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def load(url: str, lab: Lab) -> dict:
    import psycopg

    t: dict = {"load_before": _load()}
    t0 = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    _insert_registry(engine, lab)
    with engine.begin() as conn:  # the lab's months, before any row arrives (else: the default partition)
        m = month_start(lab.t0)
        while m < lab.t_end:
            for table in ("segment", "gap"):
                create_month(conn, table, m)
            m = add_months(m, 1)
    engine.dispose()
    with psycopg.connect(_pg_dsn(url), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        deferred = [(n, d) for n, d in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'segment' AND indexname <> 'segment_pkey'")]
        cons = {n: d for n, d in conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                               "WHERE conrelid = 'segment'::regclass AND contype = 'u'")}
        for name, _ in deferred:
            conn.execute(f'ALTER TABLE segment DROP CONSTRAINT "{name}"' if name in cons else f'DROP INDEX "{name}"')
        t1 = time.perf_counter()
        def progress(n: int) -> None:
            if n % 5_000_000 < 50_000:
                _log(f"  {n:,} segments copied")

        n = copy_lab(conn, lab, batch=50_000, progress=progress)
        t["copy_s"] = round(time.perf_counter() - t1, 1)
        _log(f"COPY {n:,} segments in {t['copy_s']} s; re-creating indexes")
        t2 = time.perf_counter()
        for name, ddl in deferred:  # on the parent, not ONLY: every partition gets its index
            conn.execute(f'ALTER TABLE segment ADD CONSTRAINT "{name}" {cons[name]}' if name in cons
                         else ddl.replace(" ON ONLY ", " ON "))
        t["index_build_s"] = round(time.perf_counter() - t2, 1)
        t["runs_s"] = rebuild_runs(conn)
        _log(f"indexes in {t['index_build_s']} s, runs (segment_run) in {t['runs_s']} s")
        conn.execute("SELECT setval(pg_get_serial_sequence('segment', 'id'), (SELECT max(id) FROM segment))")
        conn.execute("SELECT setval(pg_get_serial_sequence('gap', 'id'), (SELECT max(id) FROM gap))")
        t3 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) segment")  # all-visible pages: the report's counts read the index alone
        conn.execute("ANALYZE")
        t["vacuum_analyze_s"] = round(time.perf_counter() - t3, 1)
        t["database_bytes"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        t["default_partition_rows"] = conn.execute("SELECT count(*) FROM segment_default").fetchone()[0]
    t.update(segments=n, gaps=len(lab.gaps), total_s=round(time.perf_counter() - t0, 1), load_after=_load())
    with engine.connect() as c:
        t["segment_partitions"] = [p.name for p in partitions(c, "segment")]
    return t


def pruning(engine, lab: Lab, seed: int) -> dict:
    """The partitions the segment query of a real report reads, by EXPLAIN."""
    stmts, window = _capture_footage_sql(engine, lab, seed)
    sql, params = stmts["segment"]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
        raw.rollback()
    finally:
        raw.close()
    rels: set[str] = set()

    def walk(node):
        if "Relation Name" in node:
            rels.add(node["Relation Name"])
        for ch in node.get("Plans", []):
            walk(ch)
    walk(plan[0]["Plan"])
    with engine.connect() as c:
        total = len(partitions(c, "segment"))
    # the kept runs and hours (segment_run, segment_run_dirty, segment_hour) are read too: not partitions of segment
    kept = ("segment_run", "segment_hour")
    return {"window": window, "segment_partitions_read": sorted(r for r in rels if not r.startswith(kept)),
            "other_relations_read": sorted(r for r in rels if r.startswith(kept)), "segment_partitions_total": total}


def coverage(engine, lab: Lab) -> dict:
    with engine.begin() as c:
        c.execute(text("DELETE FROM coverage_day"))
        c.execute(text("DELETE FROM index_meta"))
    out: dict = {"load_before": _load()}
    day_before = CoverageStore(engine, lambda: lab.t_end - DAY_MS)
    t = time.perf_counter()
    out["full_camera_days"] = day_before.refresh()
    out["full_s"] = round(time.perf_counter() - t, 2)
    _log(f"coverage full rollup: {out['full_camera_days']:,} camera-days in {out['full_s']} s")
    cov = CoverageStore(engine, lambda: lab.t_end)
    t = time.perf_counter()
    out["next_day_camera_days"] = cov.refresh()
    out["next_day_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    cov.refresh()
    out["nothing_new_s"] = round(time.perf_counter() - t, 3)
    with engine.begin() as c:  # 100 late segments (an outage's spool drained): 10 cameras, 10 old days
        rows = []
        for i, cam in enumerate(lab.cams[:10]):
            for d in range(10):
                st = lab.t0 + (20 + d * 7) * DAY_MS + (i * 10 + d) * 1000 + 30_000  # off the minute grid
                rows.append({"camera_id": cam, "start_ms": st, "end_ms": st + 1000, "media_duration_ms": 1000,
                             "key": f"v1/{cam}/late/{d}.mp4", "version_id": uuid.uuid4().hex, "size": 1000,
                             "sha256": "0" * 64, "status": "stored"})
        c.execute(text("INSERT INTO segment (camera_id, start_ms, end_ms, media_duration_ms, key, version_id, size, "
                       "sha256, status, codec, audio_codec, width, height, frames, session_id, sequence, recorder_id) "
                       "VALUES (:camera_id, :start_ms, :end_ms, :media_duration_ms, :key, :version_id, :size, :sha256, "
                       ":status, '', '', 0, 0, 0, '', 0, '')"), rows)
    cov.refresh()  # the watermark trails by one refresh (index.coverage, invariant 3)
    t = time.perf_counter()
    out["late_camera_days"] = cov.refresh()
    out["late_s"] = round(time.perf_counter() - t, 3)
    out["load_after"] = _load()
    _log(f"coverage incremental: next day {out['next_day_s']} s ({out['next_day_camera_days']} camera-days), "
         f"nothing new {out['nothing_new_s']} s, 100 late segments {out['late_s']} s ({out['late_camera_days']} days)")
    return out


def health(engine, lab: Lab, runs: int) -> dict:
    out: dict = {"load_before": _load()}
    for label, now in (("midnight", lab.t_end), ("2359", lab.t_end + DAY_MS - 60_000)):
        cov = CoverageStore(engine, lambda now=now: now)
        cov.refresh()
        _health_once(engine, cov, now)  # warm
        times = []
        for _ in range(runs):
            s, status, ncams = _health_once(engine, cov, now)
            times.append(s)
        out[label] = {"p50_s": round(statistics.median(times), 4), "max_s": round(max(times), 4), "cameras": ncams,
                      "status": status}
        _log(f"health at {label}: p50 {out[label]['p50_s'] * 1000:.0f} ms, max {out[label]['max_s'] * 1000:.0f} ms "
             f"({ncams} cameras)")
    out["load_after"] = _load()
    out["goal_met"] = max(out["midnight"]["max_s"], out["2359"]["max_s"]) < GOALS["health_s"]
    return out


def http_health(url: str, lab: Lab, runs: int) -> dict:
    """``GET /api/v1/health`` on the served app, at midnight and at 23:59 (goal: p50 and p99 < 500 ms)."""
    out: dict = {"load_before": _load()}
    with served(url, lab.t_end) as (client, clock):
        for label, now in (("midnight", lab.t_end), ("2359", lab.t_end + DAY_MS - 60_000)):
            clock.now_ms = now
            r = timed_gets(client, "/api/v1/health", runs)
            body = r.pop("json")
            r.update(status=body["status"], cameras=len(body["cameras"]))
            # what the route added before it sent the report as it is: FastAPI's jsonable_encoder over it
            from fastapi.encoders import jsonable_encoder
            t = time.perf_counter()
            jsonable_encoder(body)
            r["jsonable_encoder_s"] = round(time.perf_counter() - t, 4)
            out[label] = r
            _log(f"GET /api/v1/health at {label}: p50 {r['p50_s'] * 1000:.0f} ms, p99 {r['p99_s'] * 1000:.0f} ms, "
                 f"max {r['max_s'] * 1000:.0f} ms ({r['cameras']} cameras, {r['bytes'] / 1024:.0f} KiB; the encoder "
                 f"it skips now: {r['jsonable_encoder_s'] * 1000:.0f} ms) — goal "
                 f"< {GOALS['http_health_s'] * 1000:.0f} ms: p99 / goal {r['p99_s'] / GOALS['http_health_s']:.2f}")
    out["load_after"] = _load()
    out["goal_met"] = max(out["midnight"]["p99_s"], out["2359"]["p99_s"]) < GOALS["http_health_s"]
    return out


def compliance(url: str, engine, lab: Lab, runs: int) -> dict:
    """The last complete month's compliance report for every camera: over HTTP (JSON) and the
    product function alone (goal < 5 s)."""
    from zoneinfo import ZoneInfo

    from retention.compliance import compliance_report
    from retention.months import previous_month

    tz = ZoneInfo("Asia/Shanghai")  # api.settings.Settings.timezone default
    month = previous_month(lab.t_end, tz)
    out: dict = {"month": month, "load_before": _load()}
    with served(url, lab.t_end) as (client, _clock):
        r = timed_gets(client, "/api/v1/compliance", runs, params={"month": month, "format": "json"})
        body = r.pop("json")
        r.update(verdict=body["verdict"]["level"], cameras=len(body["cameras"]))
        out["http"] = r
    _log(f"GET /api/v1/compliance?month={month}: p50 {r['p50_s']:.2f} s, max {r['max_s']:.2f} s "
         f"({r['cameras']} cameras, verdict {r['verdict']}, {r['bytes'] / 1024:.0f} KiB) — goal "
         f"< {GOALS['compliance_s']:.0f} s: max / goal {r['max_s'] / GOALS['compliance_s']:.2f}")
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        rolled = compliance_report(engine, month, tz, lab.t_end)
        times.append(time.perf_counter() - t)
    out["function"] = {"runs": runs, "p50_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
    # baseline in the same run: every segment row of the month read (the report before the rollup's lock columns)
    t = time.perf_counter()
    live = compliance_report(engine, month, tz, lab.t_end, rollup=False)
    out["live_baseline_s"] = round(time.perf_counter() - t, 3)
    out["same_report"] = rolled.to_json() == live.to_json()
    _log(f"compliance_report({month}) in process: p50 {out['function']['p50_s']:.2f} s, "
         f"max {out['function']['max_s']:.2f} s; baseline every row live {out['live_baseline_s']:.2f} s "
         f"(ratio {out['live_baseline_s'] / max(out['function']['p50_s'], 1e-9):.1f}x), same report: {out['same_report']}")
    out["load_after"] = _load()
    out["goal_met"] = max(r["max_s"], out["function"]["max_s"]) < GOALS["compliance_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=256)
    ap.add_argument("--days", type=int, default=183)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--health-runs", type=int, default=10)
    ap.add_argument("--http-runs", type=int, default=20)
    ap.add_argument("--compliance-runs", type=int, default=3)
    ap.add_argument("--parts", default=",".join(PARTS), help="which of " + ",".join(PARTS) + " to measure")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    ap.add_argument("--pg-url", help="measure an existing database built by --keep (no load)")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        ap.error(f"--parts: unknown {sorted(parts - set(PARTS))}; choose from {','.join(PARTS)}")
    lab = Lab(args.cameras, args.days, args.records, args.seed)
    res: dict = {"cameras": args.cameras, "days": args.days, "parts": sorted(parts), "segments_estimate": lab.n_segments_estimate,
                 "cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _log(f"lab: {args.cameras} cameras x {args.days} days, ~{res['segments_estimate']:,} segments")
    admin, name, url = None, None, args.pg_url
    if not url:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"lw_scale_{uuid.uuid4().hex[:10]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        if not args.pg_url:
            res["load"] = load(url, lab)
            _log(f"loaded in {res['load']['total_s']} s, {res['load']['database_bytes'] / 2**30:.1f} GiB")
        engine = make_engine(url)
        try:
            if args.pg_url:
                upgrade(engine)  # a database kept by an older bench: this branch's migrations
            if "report" in parts:
                res["pruning"] = pruning(engine, lab, args.seed)
                _log(f"report query reads {res['pruning']['segment_partitions_read']} "
                     f"of {res['pruning']['segment_partitions_total']} segment partitions")
                q = measure(engine, lab, args.queries, args.seed)
                res["report_footage"] = {"warm": q["warm"], "contention": q["contention"],
                                         "per_report": q["per_report"],
                                         "goal_met": q["warm"]["p99_ms"] < GOALS["report_p99_ms"]}
                _log(f"report footage: p50 {q['warm']['p50_ms']:.2f} ms, p99 {q['warm']['p99_ms']:.2f} ms, "
                     f"max {q['warm']['max_ms']:.2f} ms")
            if "coverage" in parts:
                res["coverage"] = coverage(engine, lab)
            if "health" in parts:
                res["health"] = health(engine, lab, args.health_runs)
            if "http" in parts:
                res["http_health"] = http_health(url, lab, args.http_runs)
            if "compliance" in parts:
                res["compliance"] = compliance(url, engine, lab, args.compliance_runs)
        finally:
            engine.dispose()
    finally:
        if admin is not None:
            if args.keep:
                res["kept"] = url
                _log(f"kept: --pg-url {url}")
            else:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"index_scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1, default=str))
    _log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
