"""Journal overhead: CPU of journaling the index against the CPU of recording, and objects per hour.

    python -m bench.journal_overhead [--cameras 100] [--segment-seconds 10] [--minutes 6]
                                     [--recorder-cpu-per-stream-min 0.349] [--database-url URL] [--keep]

What journaling adds to recording (issue 14 §2) is two things, both measured here on the real code:

1. **capture**: every index row the uploader writes also writes its ``journal_outbox`` row in the
   same transaction (``index.journal``'s after-flush hook).  Measured as the CPU of the uploader's
   own index write (:meth:`index.queries.IndexStore.add_segment`, one per segment) with the hook,
   minus the same writes without it (the hook removed for the baseline round, same database);
2. **drain**: once a minute the journaler (:class:`retention.journal.Journaler`) turns the outbox
   into one gzip'd object through the document spool (fsync), and the spool uploads it (PUT with
   COMPLIANCE retention, read back).

``--minutes`` of recording (``cameras × 60 / segment-seconds`` segments a minute) are replayed and
the figures scaled to an hour.  CPU is user+system of this process (SQLite runs in it; with
``--database-url`` the PostgreSQL server's CPU is not counted).  Recording alone is not re-run:
its CPU comes from bench/README.md, as in bench/seal_overhead.py.  Results go to
``bench/out/journal-*.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession

from bench.procstat import proc_cpu
from bench.seal_overhead import GOAL_SHARE, RECORDER_CPU_PER_STREAM_MIN
from index import journal as index_journal
from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.models import Segment
from index.queries import IndexStore
from labwitness.clock import SystemClock, utc_ms
from retention.journal import Journaler
from retention.policy import RetentionPolicy
from storage.doc_spool import DocumentSpool
from storage.layout import segment_key
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
console = Console(width=None if sys.stdout.isatty() else 130)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _segments(minute_start_ms: int, cameras: int, seg_s: float, tag: str) -> list[Segment]:
    """One minute of recording's segment rows, as the uploader builds them."""
    dur = int(seg_s * 1000)
    out = []
    for c in range(cameras):
        cam = f"cam-{c:03d}"
        for i in range(max(1, int(60 / seg_s))):
            start = minute_start_ms + i * dur
            key = segment_key(cam, datetime.fromtimestamp(start / 1000, timezone.utc), dur)
            out.append(Segment(camera_id=cam, start_ms=start, end_ms=start + dur, media_duration_ms=dur, key=key,
                               version_id=hashlib.md5(f"{key}{tag}".encode()).hexdigest(), size=5_000_000,
                               sha256=hashlib.sha256(f"{key}{tag}".encode()).hexdigest(),
                               retain_until_ms=start + 200 * 86_400_000, lock_mode="COMPLIANCE", codec="h264",
                               width=1920, height=1080, frames=int(seg_s * 25), recorder_id="bench", session_id="s",
                               sequence=i))
    return out


def _index_minutes(index: IndexStore, start_ms: int, minutes: int, cameras: int, seg_s: float, tag: str) -> float:
    """CPU seconds of the uploader's index writes for ``minutes`` of recording."""
    rows = [_segments(start_ms + m * 60_000, cameras, seg_s, tag) for m in range(minutes)]  # built outside the timing
    c0 = _cpu()
    for minute in rows:
        for seg in minute:
            index.add_segment(seg)
    return _cpu() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=100)
    ap.add_argument("--segment-seconds", type=float, default=10.0)
    ap.add_argument("--minutes", type=int, default=6)
    ap.add_argument("--recorder-cpu-per-stream-min", type=float, default=RECORDER_CPU_PER_STREAM_MIN)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lw-journal-bench-"))
    sw = EmbeddedSeaweed(work / "seaweed").start()
    engine = make_engine(a.database_url or sqlite_url(work / "index.sqlite3"))  # installs the capture hook
    try:
        upgrade(engine)
        store = S3ObjectStore(sw.endpoint, sw.access_key, sw.secret_key, "lw-journal-bench")
        store.check()
        clock = SystemClock()
        index = IndexStore(engine)
        spool = DocumentSpool(work / "documents", store, RetentionPolicy(), clock)
        journaler = Journaler(engine, spool, clock, "bench")
        t0 = utc_ms(clock.now()) // 60_000 * 60_000 - 3 * a.minutes * 60_000

        # baseline: the same writes without the hook (removed for this round only)
        event.remove(OrmSession, "after_flush", index_journal._after_flush)
        try:
            base = _index_minutes(index, t0, a.minutes, a.cameras, a.segment_seconds, "base")
        finally:
            event.listen(OrmSession, "after_flush", index_journal._after_flush)
        with_hook = _index_minutes(index, t0 + a.minutes * 60_000, a.minutes, a.cameras, a.segment_seconds, "hook")

        journaler.run_once()  # the hook round's entries: not part of the measured drain
        spool.upload_once(limit=10_000)

        # drain: once per minute of recording, as serve's journaler does; then the spool's upload
        drain = upload = 0.0
        objects = 0
        s0 = proc_cpu(sw.proc.pid if sw.proc else None)
        hook2 = 0.0
        for m in range(a.minutes):
            hook2 += _index_minutes(index, t0 + (2 * a.minutes + m) * 60_000, 1, a.cameras, a.segment_seconds, "drain")
            c0 = _cpu()
            journaler.run_once()
            c1 = _cpu()
            objects += spool.upload_once()
            c2 = _cpu()
            drain += c1 - c0
            upload += c2 - c1
        weed = proc_cpu(sw.proc.pid if sw.proc else None) - s0
        size = sum(v.size for v in store.list_versions("journal/"))
    finally:
        engine.dispose()
        sw.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    scale = 60 / a.minutes
    capture_h = max(0.0, with_hook - base) * scale
    drain_h = (drain + upload) * scale
    recorder_h = a.recorder_cpu_per_stream_min * 60 * a.cameras
    share = (capture_h + drain_h) / recorder_h
    segs = int(a.cameras * 60 / a.segment_seconds) * a.minutes
    result = {
        "cameras": a.cameras, "segment_seconds": a.segment_seconds, "minutes": a.minutes, "segments": segs,
        "index_write_cpu_s_without_hook": round(base, 3), "index_write_cpu_s_with_hook": round(with_hook, 3),
        "capture_cpu_s_per_hour": round(capture_h, 2), "drain_and_upload_cpu_s_per_hour": round(drain_h, 2),
        "journal_cpu_s_per_hour": round(capture_h + drain_h, 2), "recorder_cpu_s_per_hour": round(recorder_h, 1),
        "share": round(share, 5), "seaweed_cpu_s_per_hour_for_journal": round(weed * scale, 2),
        "journal_objects_per_hour": round(objects * scale), "journal_bytes_per_hour": round(size * scale),
        "footage_objects_per_hour": int(a.cameras * 3600 / a.segment_seconds),
        "goal_share": GOAL_SHARE, "met": share <= GOAL_SHARE,
        "database": "postgresql" if a.database_url else "sqlite", "load_avg": os.getloadavg(),
    }
    t = Table(title=f"journal overhead: {a.cameras} cameras, {a.segment_seconds:g} s segments ({a.minutes} min scaled to 1 h)")
    t.add_column("figure")
    t.add_column("value")
    for k in ("index_write_cpu_s_without_hook", "index_write_cpu_s_with_hook", "capture_cpu_s_per_hour",
              "drain_and_upload_cpu_s_per_hour", "journal_cpu_s_per_hour", "recorder_cpu_s_per_hour", "share",
              "journal_objects_per_hour", "journal_bytes_per_hour", "footage_objects_per_hour", "met"):
        t.add_row(k, str(result[k]))
    console.print(t)
    out = OUT / f"journal-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    console.print(f"results: {out}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
