"""Retention health over six months of index, and expiry-sweep throughput.

    python -m bench.health [--pg-url URL | --sqlite-file PATH | --cameras 64 --days 183]
                           [--runs 20] [--sweep-objects 1000] [--skip-sweep] [--keep]

Part 1, health (goal: < 1 s on PostgreSQL for 64 cameras x 183 days):
builds (or reuses, ``--pg-url``/``--sqlite-file`` from ``bench.report_query
--keep``) the same synthetic lab as ``bench.report_query`` — 16.8 M one-minute
segments, gaps, 8 areas — applies the project's migrations, then measures
``retention.health.gather`` + ``classify`` (every fact of ``GET
/api/v1/health/retention`` that comes from the index) at the lab's "now":

* the first ``CoverageStore.refresh`` (building the day rollup: once per index),
* an incremental refresh (what the scheduled job does every 10 minutes),
* ``--runs`` health runs with the rollup in place (p50 / max: the goal), and
* the baseline in the same run: the same facts summed live from ``segment``
  (no rollup) — what a naive implementation pays on every check.

Part 2, sweep throughput (against an embedded SeaweedFS with Object Lock):
``--sweep-objects`` small objects are put with a retain-until a few seconds
ahead and index rows dated 220 days back (storage used directly, never a
product setting), then ``retention.sweep.run_sweep`` deletes them (mark ->
guarded batched delete -> remove row).  Baseline in the same run: the same
number of expired versions deleted with the minio client's multi-object
delete alone (no guard re-reading retention, no index).  Prints objects/s of both.

Results: ``bench/out/health-<time>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from bench.report_query import PG_ADMIN_URL, Lab, _check_reused, load_postgresql, load_sqlite
from index.coverage import CoverageStore
from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from labwitness.clock import SystemClock
from retention.health import classify, gather

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
GOAL_S = 1.0
console = Console(width=None if sys.stdout.isatty() else 130)


def _log(msg: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}")


class _LiveOnly(CoverageStore):
    """Baseline: no rollup — every window summed live from the segment table."""

    def totals(self, camera_ids, start_ms, end_ms, firsts=None, memo=None):
        from index.coverage import Totals, _window_sums

        with self.engine.connect() as conn:
            got = _window_sums(conn, list(camera_ids), start_ms, end_ms)
        return {c: got.get(c, Totals()) for c in camera_ids}

    def refresh(self, camera_ids=None) -> int:
        return 0


def _health_once(engine, cov, now_ms: int) -> tuple[float, str, int]:
    t = time.perf_counter()
    facts = gather(engine, cov, now_ms, segment_seconds=60, read_timeout_s=10, retention_days=190,
                   retention_enforced=True, capacity=(10**13, 10**13 - 10**12))
    status, problems = classify(facts)
    return time.perf_counter() - t, status, len(facts.cameras)


def bench_health(engine, lab: Lab, runs: int) -> dict:
    upgrade(engine)  # the rollup tables (migration 0005) on a database built by an older bench
    now = lab.t_end
    with engine.begin() as c:  # a clean rollup, so the first refresh is measured from scratch
        c.execute(text("DELETE FROM coverage_day"))
        c.execute(text("DELETE FROM index_meta"))
    cov = CoverageStore(engine, lambda: now)
    t = time.perf_counter()
    days = cov.refresh()
    first = time.perf_counter() - t
    _log(f"first rollup: {days:,} camera-days in {first:.1f} s")
    t = time.perf_counter()
    cov.refresh()
    incremental = time.perf_counter() - t
    _health_once(engine, cov, now)  # warm caches
    times, status, ncams = [], None, 0
    for _ in range(runs):
        s, status, ncams = _health_once(engine, cov, now)
        times.append(s)
    _log(f"health with rollup: p50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
         f"({ncams} cameras, status {status})")
    # the lab's "now" is a UTC midnight, where today's live part is empty: measure at 23:59 too,
    # the worst case (a whole day summed live on top of the rollup)
    late = now - 60_000
    cov_late = CoverageStore(engine, lambda: late)
    cov_late.refresh()
    late_times = [_health_once(engine, cov_late, late)[0] for _ in range(max(3, runs // 2))]
    _log(f"health at 23:59 (a full day live): p50 {statistics.median(late_times) * 1000:.0f} ms, "
         f"max {max(late_times) * 1000:.0f} ms")
    live = _LiveOnly(engine, lambda: now)
    base = [_health_once(engine, live, now)[0] for _ in range(2)]
    _log(f"baseline (live sums, no rollup): {min(base):.2f} s")
    return {"cameras": ncams, "first_refresh_s": round(first, 2), "camera_days": days,
            "incremental_refresh_s": round(incremental, 3),
            "health_p50_s": round(statistics.median(times), 4), "health_max_s": round(max(times), 4),
            "health_runs": runs, "baseline_live_s": round(min(base), 3),
            "health_2359_p50_s": round(statistics.median(late_times), 4), "health_2359_max_s": round(max(late_times), 4),
            "speedup": round(min(base) / statistics.median(times), 1), "status": status,
            "goal_s": GOAL_S, "goal_met": max(times + late_times) < GOAL_S}


def bench_sweep(n: int) -> dict:
    from minio.deleteobjects import DeleteObject

    from index.queries import IndexStore
    from retention.policy import RetentionPolicy  # noqa: F401  (the product's policy is never shortened here)
    from retention.rebuild import row_from_object
    from retention.sweep import SweepConfig, run_sweep
    from retention.time_sources import StoreDateSource
    from storage.layout import SegmentMeta
    from storage.s3 import S3ObjectStore
    from storage.seaweed import EmbeddedSeaweed

    UTC = timezone.utc
    with tempfile.TemporaryDirectory(prefix="lw-bench-sweep-") as tmp:
        d = Path(tmp)
        sw = EmbeddedSeaweed(d / "seaweed")  # its own generated credentials
        sw.start()
        try:
            store = S3ObjectStore(sw.endpoint, sw.access_key, sw.secret_key, "lw-sweep-bench")
            store.check()
            engine = make_engine(sqlite_url(d / "index.sqlite3"))
            upgrade(engine)
            index = IndexStore(engine)
            body = d / "seg.mp4"
            lock_s = 5 + n / 100  # the puts take a while; everything must still be locked until they finish

            def put(camera: str, i: int, indexed: bool):
                data = hashlib.sha256(f"{camera}{i}{uuid.uuid4()}".encode()).digest() * 2048  # 64 KiB
                body.write_bytes(data)
                end = datetime.now(UTC) - timedelta(days=220) + timedelta(milliseconds=i * 10)
                meta = SegmentMeta(camera_id=camera, start=end - timedelta(seconds=60), end=end, media_duration_ms=60_000,
                                   codec="h264", width=1920, height=1080, sha256=hashlib.sha256(data).hexdigest(),
                                   size=len(data), recorder_id="bench", session_id="s", sequence=i, area_id="a", frames=1500)
                stored = store.put_segment(body, meta, datetime.now(UTC) + timedelta(seconds=lock_s))
                if indexed:
                    index.add_segment(row_from_object(meta, stored))
                return stored

            _log(f"sweep: putting {n} + {n} objects (64 KiB, locked {lock_s:.0f} s) ...")
            t = time.perf_counter()
            swept = [put("cam-sweep", i, True) for i in range(n)]
            raw = [put("cam-raw", i, False) for i in range(n)]
            put_s = time.perf_counter() - t
            wait = max(o.retain_until for o in swept + raw) - datetime.now(UTC)
            time.sleep(max(0.0, wait.total_seconds()) + 1.0)

            t = time.perf_counter()
            errors = list(store.client.remove_objects(store.bucket, [DeleteObject(o.key, o.version_id) for o in raw]))
            raw_s = time.perf_counter() - t
            t = time.perf_counter()
            res = run_sweep(store, engine, SystemClock(), SweepConfig(max_share=1.0), actor="bench",
                            witnesses=[StoreDateSource(store, independent=True)])  # a store it started: external
            sweep_s = time.perf_counter() - t
            left = engine.connect().execute(text("SELECT count(*) FROM segment")).scalar()
            engine.dispose()
        finally:
            sw.stop()
    out = {"objects": n, "put_s": round(put_s, 1), "raw_delete_s": round(raw_s, 3), "raw_errors": len(errors),
           "raw_objects_per_s": round(n / raw_s, 1), "sweep_s": round(sweep_s, 3), "sweep_status": res.status,
           "sweep_summary": res.summary, "sweep_objects_per_s": round(n / sweep_s, 1), "rows_left": left,
           "ratio_sweep_over_raw_time": round(sweep_s / raw_s, 2)}
    _log(f"sweep: {n} versions in {sweep_s:.2f} s ({out['sweep_objects_per_s']}/s, status {res.status}, {left} rows left); "
         f"raw multi-delete {raw_s:.2f} s ({out['raw_objects_per_s']}/s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=64)
    ap.add_argument("--days", type=int, default=183)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    ap.add_argument("--pg-url", help="an existing database built by `bench.report_query --keep` (same lab options)")
    ap.add_argument("--sqlite-file", type=Path, help="likewise, an existing SQLite file")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--sweep-objects", type=int, default=1000)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep a database built here")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lab = Lab(args.cameras, args.days, args.records, args.seed)
    result: dict = {"lab": {"cameras": args.cameras, "days": args.days, "segments": lab.n_segments_estimate}}
    drop = None
    if args.sqlite_file or (args.db == "sqlite" and not args.pg_url):
        kind = "sqlite"
        path = args.sqlite_file or OUT / f"health-{stamp}.sqlite3"
        if not args.sqlite_file:
            load_sqlite(path, lab, True)
        engine = make_engine(sqlite_url(path))
    else:
        kind = "postgresql"
        url = args.pg_url
        if not url:
            name = f"lw_bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            _log(f"PostgreSQL database {name}: loading {lab.n_segments_estimate:,} segments ...")
            load_postgresql(url, lab, True)
            drop = (admin, name)
        engine = make_engine(url)
    if args.pg_url or args.sqlite_file:
        _check_reused(engine, lab)
    result["db"] = kind
    try:
        result["health"] = bench_health(engine, lab, args.runs)
    finally:
        engine.dispose()
        if drop and not args.keep:
            with drop[0].connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{drop[1]}" WITH (FORCE)'))
        elif drop:
            _log(f"kept: --pg-url {url}")
    if not args.skip_sweep:
        result["sweep"] = bench_sweep(args.sweep_objects)
    h = result["health"]
    t = Table(title=f"retention health over {args.cameras} cameras x {args.days} days ({lab.n_segments_estimate:,} segments, {kind})")
    for col in ("first rollup s", "incremental s", "health p50 ms", "health max ms", "at 23:59 p50/max ms", "baseline live s",
                "speed-up", "goal"):
        t.add_column(col, justify="right")
    t.add_row(f"{h['first_refresh_s']:.1f}", f"{h['incremental_refresh_s']:.3f}", f"{h['health_p50_s'] * 1000:.0f}",
              f"{h['health_max_s'] * 1000:.0f}", f"{h['health_2359_p50_s'] * 1000:.0f} / {h['health_2359_max_s'] * 1000:.0f}",
              f"{h['baseline_live_s']:.2f}", f"{h['speedup']:.0f}x",
              f"< {GOAL_S:.0f} s {'met' if h['goal_met'] else 'NOT met'}")
    console.print(t)
    if "sweep" in result:
        s = result["sweep"]
        console.print(f"sweep: {s['sweep_objects_per_s']} objects/s ({s['sweep_status']}) vs raw multi-delete "
                      f"{s['raw_objects_per_s']} objects/s (sweep takes {s['ratio_sweep_over_raw_time']}x the raw time)")
    path = OUT / f"health-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    _log(f"results written to {path}")
    return 0 if h["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
