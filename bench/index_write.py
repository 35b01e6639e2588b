"""What the runs and hours triggers cost the writers: the recorder's segment insert and the sweep.

    python -m bench.index_write [--cameras 64] [--hours 6] [--db sqlite|postgresql|both] [--rounds 3]

Since migrations 0017/0018 (decisions 54 and 56) every write to ``segment`` runs a trigger that
keeps ``segment_run`` and ``segment_hour``.  This measures, on the real code and real databases,
with the triggers as they are against the same statements with the triggers dropped (the
baseline, same database, same rows; rounds alternate so drift hits both):

1. **insert**: :meth:`index.queries.IndexStore.add_segment` once per segment, as the uploader
   does -- ``--cameras`` cameras × ``--hours`` of 1-minute segments, appended in time order
   camera by camera minute by minute (the recorder's order); per insert: wall, this process's
   CPU, and on PostgreSQL the server backend's CPU (same machine, ``/proc``);
2. **sweep**: the retention sweep's garbage mark of the oldest hour of every camera in one
   transaction, then ``segment_runs.settle`` (what ``retention.sweep`` does), then the delete of
   those rows and ``settle`` again; per segment.

Each round starts from an empty ``segment`` table.  Results: ``bench/out/index_write-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, delete, text, update

from bench.procstat import proc_cpu
from index import segment_runs
from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.models import Segment
from index.queries import IndexStore

OUT = Path(__file__).resolve().parent / "out"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = 1_790_000_000_000
MIN = 60_000
SEG = Segment.__table__


def _triggers(engine) -> list[str]:
    """The DDL that re-creates the segment triggers (to drop them for the baseline and put them back)."""
    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            return [r[0] for r in c.exec_driver_sql(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'segment'::regclass "
                "AND NOT tgisinternal AND tgname = 'segment_run_track'")]
        return [r[0] for r in c.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'segment'")]


def _set_triggers(engine, ddl: list[str], on: bool) -> None:
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.exec_driver_sql("DROP TRIGGER IF EXISTS segment_run_track ON segment")
        else:
            for name in [r[0] for r in c.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'segment'")]:
                c.exec_driver_sql(f'DROP TRIGGER "{name}"')
        if on:
            for d in ddl:
                c.exec_driver_sql(d)


def _backend_pid(engine) -> int | None:
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as c:
        return int(c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _cpu() -> float:
    return time.process_time()


def _round(engine, cameras: int, hours: int, on: bool) -> dict:
    with engine.begin() as c:
        for t in ("segment", "segment_run", "segment_run_dirty", "segment_hour"):
            c.exec_driver_sql(f"DELETE FROM {t}")
    store = IndexStore(engine)
    # the pool hands this thread the same connection: the backend whose CPU is read does the work
    pid = _backend_pid(engine)
    n = 0
    w0, c0, b0 = time.perf_counter(), _cpu(), proc_cpu(pid)
    for m in range(hours * 60):
        for cam in range(cameras):
            n += 1
            a = T0 + m * MIN
            store.add_segment(Segment(camera_id=f"cam-{cam:03d}", start_ms=a, end_ms=a + MIN, media_duration_ms=MIN,
                                      key=f"v1/cam-{cam:03d}/{a}.mp4", version_id=f"v{n}", size=4_000_000,
                                      sha256=f"{n:064x}", codec="h264", status="stored"))
    ins = dict(n=n, wall_ms=(time.perf_counter() - w0) * 1000 / n, client_cpu_ms=(_cpu() - c0) * 1000 / n,
               server_cpu_ms=(proc_cpu(pid) - b0) * 1000 / n if pid else None)
    w0, c0, b0 = time.perf_counter(), _cpu(), proc_cpu(pid)
    with engine.begin() as c:
        k = c.execute(update(SEG).where(SEG.c.start_ms < T0 + 60 * MIN).values(status="garbage")).rowcount
        segment_runs.settle(c)
        c.execute(delete(SEG).where(SEG.c.status == "garbage"))
        segment_runs.settle(c)
    sweep = dict(n=k, wall_ms=(time.perf_counter() - w0) * 1000 / k, client_cpu_ms=(_cpu() - c0) * 1000 / k,
                 server_cpu_ms=(proc_cpu(pid) - b0) * 1000 / k if pid else None)
    if on:
        with engine.begin() as c:
            assert segment_runs.differences(c) == [], "the kept runs or hours differ from the segments"
    return {"insert": ins, "sweep": sweep}


def run(db: str, cameras: int, hours: int, rounds: int) -> dict:
    tmp = None
    if db == "sqlite":
        tmp = tempfile.TemporaryDirectory(prefix="lw-index-write-")
        url = sqlite_url(Path(tmp.name) / "index.sqlite3")
    else:
        name = f"lw_iw_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)  # single-threaded: the pool hands back the same connection each time
    try:
        upgrade(engine)
        ddl = _triggers(engine)
        got: dict[str, list[dict]] = {"on": [], "off": []}
        for r in range(rounds):
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                _set_triggers(engine, ddl, on)
                got["on" if on else "off"].append(_round(engine, cameras, hours, on))
        _set_triggers(engine, ddl, True)
    finally:
        engine.dispose()
        if tmp is not None:
            tmp.cleanup()
        else:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()

    def med(side: str, part: str, key: str):
        vals = [g[part][key] for g in got[side] if g[part][key] is not None]
        return round(statistics.median(vals), 4) if vals else None

    out: dict = {"db": db, "rounds": got}
    for part in ("insert", "sweep"):
        row = {}
        for key in ("wall_ms", "client_cpu_ms", "server_cpu_ms"):
            on, off = med("on", part, key), med("off", part, key)
            row[key] = {"triggers": on, "without": off, "added": None if on is None else round(on - off, 4)}
        out[part] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=64)
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    a = ap.parse_args(argv)
    results = [run(db, a.cameras, a.hours, a.rounds)
               for db in (("sqlite", "postgresql") if a.db == "both" else (a.db,))]
    for r in results:
        for part in ("insert", "sweep"):
            print(f"{r['db']:10} {part:6} per segment, median of {a.rounds}: " + "; ".join(
                f"{k} {v['triggers']} with / {v['without']} without (+{v['added']})" for k, v in r[part].items()
                if v["triggers"] is not None))
    OUT.mkdir(exist_ok=True)
    path = OUT / f"index_write-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"benchmark": "index_write", "args": vars(a), "results": results}, indent=1))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
