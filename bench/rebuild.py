"""Index rebuild from storage alone: how long for a six-month, 64-camera installation?

    python -m bench.rebuild [--cameras 64] [--days 183] [--segment-seconds 60]
                            [--db sqlite|postgresql] [--workers 8] [--keep]
    bash deploy/dev.sh bench rebuild --cameras 8 --days 7      # a quick run

1. **Journal.**  A fresh embedded SeaweedFS (Object Lock bucket) under ``bench/out/``
   gets the journal such an installation would have written: one object per minute
   (the journaler's default flush), each with that minute's segment entries of every
   camera (every column, as ``index.journal`` captures them), plus per camera and day
   one gap with its reason, and a few test records (3 revisions each), audit events and
   registry revisions.  Objects are gzip'd JSON lines (``retention.journal.encode_batch``),
   PUT in parallel; no footage bytes.
2. **Rebuild.**  ``retention.rebuild.run_rebuild`` into an empty index (SQLite file or a
   fresh PostgreSQL database, migrated), with progress shown.  No footage bytes exist in
   this bucket, so the rebuild's second step (footage older than the journal, found by
   walking hour prefixes) finds none, as in an installation journaled from its first
   day.  The S3 listing rate is measured on the journal prefix, to show what
   ``--check-footage`` (listing all 16.9 M versions) would add.
3. **Figures.**  Time per phase, rows restored per second; goal < 30 min for 64 x 183
   days on this 2-core box (scaled linearly for a smaller run).

Results go to ``bench/out/rebuild-*.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import secrets
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy import create_engine, func, select, text

from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.models import AuditEvent, Gap, Segment, TestRecord
from labwitness.clock import SystemClock
from retention.journal import journal_key
from retention.rebuild import run_rebuild
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
PG_ADMIN_URL = os.environ.get("LABWITNESS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BUCKET = "lw-rebuild-bench"
GOAL_S = 30 * 60
MIN = 60_000
DAY = 86_400_000
console = Console(width=None if sys.stdout.isatty() else 130)


class Lab:
    def __init__(self, cameras: int, days: int, segment_s: int) -> None:
        self.cameras = [f"cam-{i:03d}" for i in range(cameras)]
        self.days = days
        self.seg_ms = segment_s * 1000
        day0 = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
        self.t0 = int(day0.timestamp() * 1000)
        self.slots = days * DAY // self.seg_ms

    def key(self, cam: str, start_ms: int) -> str:
        t = datetime.fromtimestamp(start_ms / 1000, timezone.utc)
        return f"v1/{cam}/{t:%Y/%m/%d/%H}/{t:%Y%m%dT%H%M%S}.000000Z-{self.seg_ms}.mp4"

    def segment(self, ci: int, slot: int) -> dict:
        cam = self.cameras[ci]
        start = self.t0 + slot * self.seg_ms
        return {"id": slot * len(self.cameras) + ci + 1, "camera_id": cam, "start_ms": start,
                "end_ms": start + self.seg_ms, "media_duration_ms": self.seg_ms, "key": self.key(cam, start),
                "version_id": f"{ci:04x}{slot:012x}", "size": 30_000_000, "sha256": f"{slot:064x}",
                "retain_until_ms": start + 190 * DAY, "lock_mode": "COMPLIANCE", "codec": "h264", "audio_codec": "",
                "width": 1920, "height": 1080, "frames": 1500, "session_id": f"s{ci}", "sequence": slot,
                "recorder_id": "bench", "status": "stored", "verified_ms": None, "lock_verified_ms": None,
                "content_checked_ms": None}

    def extras(self, slot: int) -> list[tuple[str, dict]]:
        """Gaps (one per camera and day, at 03:00), test records, audit events, registry revisions."""
        out: list[tuple[str, dict]] = []
        start = self.t0 + slot * self.seg_ms
        if slot == 0:
            for ci, cam in enumerate(self.cameras):
                out.append(("revision", {"id": ci + 1, "entity": "camera", "entity_id": cam, "action": "create",
                                         "actor": "admin", "at_ms": start, "before": None, "after": json.dumps(
                                             {"id": cam, "name": cam, "rtsp_url": f"rtsp://10.0.0.{ci}/s", "area_id": None,
                                              "enabled": True, "created_ms": start, "updated_ms": start})}))
        if (start - self.t0) % DAY == 3 * 3_600_000:
            day = (start - self.t0) // DAY
            for ci, cam in enumerate(self.cameras):
                out.append(("gap", {"id": day * len(self.cameras) + ci + 1, "camera_id": cam, "start_ms": start + 1000,
                                    "end_ms": start + 5000, "reason": "timeout", "detail": "bench"}))
        if slot % 60 == 30:  # a test record an hour, three revisions, and its audit trail
            n = slot // 60
            for rev in (1, 2, 3):
                out.append(("test_record_revision", {
                    "id": 3 * n + rev, "record_id": f"REC-{n}", "revision": rev, "at_ms": start, "actor": "ingest",
                    "before": None, "after": json.dumps({"report_no": f"JC-{n}", "commission_no": "", "project_name": "",
                                                         "test_item": "抗压", "sample_ids": [], "area_ids": [],
                                                         "equipment_ids": [], "operator": f"op{rev}",
                                                         "started_ms": start, "ended_ms": start + 600_000})}))
                out.append(("audit_event", {"id": 3 * n + rev, "at_ms": start, "actor": "ingest", "role": "ingest",
                                            "action": "record.upsert", "target": f"REC-{n}", "detail": "{}",
                                            "prev_hash": f"{3 * n + rev - 1:064x}", "hash": f"{3 * n + rev:064x}",
                                            "mac": None}))
        return out

    def batch(self, slot: int) -> bytes:
        lines = [json.dumps({"id": 0, "kind": "segment", "at_ms": 0, "body": self.segment(ci, slot)},
                            separators=(",", ":")) for ci in range(len(self.cameras))]
        lines += [json.dumps({"id": 0, "kind": k, "at_ms": 0, "body": b}, separators=(",", ":"))
                  for k, b in self.extras(slot)]
        return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)

    def slots_per_object(self) -> int:
        return max(1, MIN // self.seg_ms)


def write_journal(store: S3ObjectStore, lab: Lab, workers: int) -> tuple[int, int, float]:
    """PUT the journal; returns (objects, bytes, seconds)."""
    client, bucket = store.client, store.bucket
    step = lab.slots_per_object()
    starts = range(0, lab.slots, step)
    total_bytes = 0
    t = time.monotonic()

    def put(first: int) -> int:
        data = b"".join(lab.batch(s) for s in range(first, min(first + step, lab.slots)))
        key = journal_key(lab.t0 + first * lab.seg_ms + 30_000, "bench", first + 1, first + step)
        client.put_object(bucket, key, BytesIO(data), len(data), content_type="application/gzip")
        return len(data)

    with Progress(TextColumn("写入日志 / writing the journal"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console) as bar, ThreadPoolExecutor(workers) as pool:
        task = bar.add_task("", total=len(starts))
        for n in pool.map(put, starts):
            total_bytes += n
            bar.advance(task)
    return len(starts), total_bytes, time.monotonic() - t


def fresh_db(kind: str, run: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        path = run / "index.sqlite3"
        return sqlite_url(path), lambda: None
    name = f"lw_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rebuild", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=64)
    ap.add_argument("--days", type=int, default=183)
    ap.add_argument("--segment-seconds", type=int, default=60)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the run directory (SeaweedFS data, SQLite file)")
    args = ap.parse_args(argv)
    lab = Lab(args.cameras, args.days, args.segment_seconds)
    run = OUT / f"rebuild-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    run.mkdir(parents=True)
    access, secret = "bench-" + secrets.token_hex(4), secrets.token_urlsafe(24)  # no fixed credential
    sw = EmbeddedSeaweed(run / "seaweed", access, secret)
    sw.start()
    drop = lambda: None  # noqa: E731
    try:
        store = S3ObjectStore(sw.endpoint, access, secret, BUCKET)
        store.check()
        console.print(f"{len(lab.cameras)} cameras x {lab.days} days of {args.segment_seconds} s segments = "
                      f"{lab.slots * len(lab.cameras):,} segments")
        objects, nbytes, put_s = write_journal(store, lab, args.workers)
        console.print(f"journal: {objects:,} objects, {nbytes / 1e6:,.0f} MB gzip'd, written in {put_s:,.0f} s")
        t = time.monotonic()
        listed = sum(1 for _ in store.list_versions("journal/"))
        list_s = time.monotonic() - t
        list_rate = listed / list_s if list_s else 0.0
        url, drop = fresh_db(args.db, run)
        engine = make_engine(url)
        upgrade(engine)
        phases: dict[str, float] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("重建 / rebuild", total=None)
            started = time.monotonic()

            def progress(done: int, total: int, phase: str = "") -> None:
                if phase not in phases:
                    phases[phase] = time.monotonic()
                bar.update(task, completed=done, total=total, description=f"重建 / rebuild: {phase}")

            res = run_rebuild(store, engine, SystemClock(), workers=args.workers,
                              progress=progress, actor="bench")
            total_s = time.monotonic() - started
        with engine.connect() as c:
            counts = {m.__table__.name: c.execute(select(func.count()).select_from(m.__table__)).scalar()
                      for m in (Segment, Gap, TestRecord, AuditEvent)}
        engine.dispose()
        journal_s = phases.get("footage", started + total_s) - phases.get("journal", started)
        footage_s = started + total_s - phases.get("footage", started + total_s)
        versions = lab.slots * len(lab.cameras)
        est_list_s = versions / list_rate if list_rate else 0.0
        result = {
            "cameras": len(lab.cameras), "days": lab.days, "segment_seconds": args.segment_seconds, "db": args.db,
            "workers": args.workers, "segments": versions, "journal_objects": objects, "journal_bytes": nbytes,
            "journal_put_s": round(put_s, 1), "status": res.status, "rows": counts,
            "rebuild_s": round(total_s, 1), "journal_phase_s": round(journal_s, 1),
            "footage_phase_s": round(footage_s, 1), "segments_per_s": round(versions / journal_s) if journal_s else None,
            "s3_list_versions_per_s": round(list_rate), "check_footage_listing_estimate_s": round(est_list_s, 1),
            "goal_s": GOAL_S,
        }
        assert counts["segment"] == versions, (counts, versions)
        console.print_json(json.dumps(result))
        ok = total_s < GOAL_S * (len(lab.cameras) * lab.days) / (64 * 183)
        console.print(f"rebuild {total_s:,.0f} s ({result['segments_per_s']:,} segments/s in the journal phase) -> "
                      f"{'[green]within' if ok else '[red]over'}[/] the goal scaled to this size; --check-footage would "
                      f"add ~{est_list_s:,.0f} s of listing at {list_rate:,.0f} versions/s")
        (OUT / f"rebuild-{args.db}-{len(lab.cameras)}x{lab.days}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
         ).write_text(json.dumps(result, indent=2))
        return 0 if ok and res.status == "ok" else 1
    finally:
        sw.stop()
        drop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
