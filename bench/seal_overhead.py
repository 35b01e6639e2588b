"""Seal overhead: CPU of the hourly seal against the CPU of recording, and objects written per hour.

    python -m bench.seal_overhead [--cameras 100] [--segment-seconds 10] [--hours 3]
                                  [--recorder-cpu-per-stream-min 0.349] [--database-url URL] [--keep]

Setup (not measured): a fresh embedded SeaweedFS (Object Lock) and a SQLite index (or
``--database-url``); before each "hour", the rows one hour of recording leaves in the index
(``cameras × 3600 / segment-seconds`` segment rows with distinct keys, versions and SHA-256,
a few gaps and audit events), inserted in bulk.  The footage itself is not stored: the seal job
reads only the index.

Measured per hour: one run of the real seal job (:func:`retention.seals.run_seal`: read the
unsealed rows, Merkle trees, sign, put into the document spool (fsync), mark the rows in the
index) followed by the document spool's upload (PUT with COMPLIANCE retention, read back), as
``serve`` does it.  CPU is user+system of this process (all threads; SQLite runs in it) and,
separately, SeaweedFS's for the upload (from ``/proc``).

Recording alone is **not re-run** (100 cameras is the whole 2-core machine for a minute, see
bench/record): its CPU comes from bench/README.md, ``--find-max`` at N=100 with 10 s segments,
0.349 CPU-s per stream-minute of the recorder process (SeaweedFS storing it: 32.8 CPU-s per
minute, shown in that table).  Overhead = seal CPU per hour / recorder CPU per hour (goal ≤ 5 %).
Journaling (issue 14 §2) is a separate job of its own helper and is not in this figure.

Results go to ``bench/out/seal-*.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from api.evidence import SigningKey
from bench.procstat import proc_cpu
from index.audit import AuditLog
from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.models import Gap, Segment
from labwitness.clock import SystemClock, utc_ms
from retention.policy import RetentionPolicy
from retention.seals import SealSigner, run_seal
from storage.doc_spool import DocumentSpool
from storage.layout import segment_key
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
GOAL_SHARE = 0.05
#: bench/README.md, bench.record --find-max, N=100, 10 s segments (2026-11-25)
RECORDER_CPU_PER_STREAM_MIN = 0.349
SEAWEED_CPU_PER_MIN_AT_100 = 32.8

console = Console(width=None if sys.stdout.isatty() else 130)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _insert_hour(engine, hour_start_ms: int, cameras: int, seg_s: float, n: int) -> int:
    """One hour of recording's index rows (bulk, as fast as possible: not what is measured)."""
    rows, per_cam = [], int(3600 / seg_s)
    dur = int(seg_s * 1000)
    for c in range(cameras):
        cam = f"cam-{c:03d}"
        for i in range(per_cam):
            start = hour_start_ms + i * dur
            key = segment_key(cam, datetime.fromtimestamp(start / 1000, timezone.utc), dur)
            rows.append({"camera_id": cam, "start_ms": start, "end_ms": start + dur, "media_duration_ms": dur, "key": key,
                         "version_id": hashlib.md5(f"{key}{n}".encode()).hexdigest(), "size": 5_000_000,
                         "sha256": hashlib.sha256(f"{key}{n}".encode()).hexdigest(), "retain_until_ms": start + 200 * 86_400_000,
                         "lock_mode": "COMPLIANCE", "codec": "h264", "width": 1920, "height": 1080, "frames": int(seg_s * 25),
                         "recorder_id": "bench", "session_id": "s", "sequence": i, "status": "stored"})
    with engine.begin() as c:
        for i in range(0, len(rows), 5000):
            c.execute(Segment.__table__.insert(), rows[i:i + 5000])
        c.execute(Gap.__table__.insert(), [{"camera_id": f"cam-{c_:03d}", "start_ms": hour_start_ms + 1000 * n,
                                            "end_ms": hour_start_ms + 1000 * n + 30_000, "reason": "timeout", "detail": ""}
                                           for c_ in range(3)])
    return len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=100)
    ap.add_argument("--segment-seconds", type=float, default=10.0)
    ap.add_argument("--hours", type=int, default=3)
    ap.add_argument("--recorder-cpu-per-stream-min", type=float, default=RECORDER_CPU_PER_STREAM_MIN)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lw-seal-bench-"))
    sw = EmbeddedSeaweed(work / "seaweed").start()  # its own generated credentials
    engine = make_engine(a.database_url or sqlite_url(work / "index.sqlite3"))
    runs = []
    try:
        upgrade(engine)
        store = S3ObjectStore(sw.endpoint, sw.access_key, sw.secret_key, "lw-seal-bench")
        store.check()
        clock = SystemClock()
        spool = DocumentSpool(work / "documents", store, RetentionPolicy(), clock)
        key = SigningKey.load(work / "key")
        signer = SealSigner(key.fingerprint, key.public_pem(), key.sign)
        audit = AuditLog(engine, lambda: utc_ms(clock.now()))
        hour0 = utc_ms(clock.now()) // 3_600_000 * 3_600_000 - a.hours * 3_600_000
        for h in range(a.hours):
            n = _insert_hour(engine, hour0 + h * 3_600_000, a.cameras, a.segment_seconds, h)
            for i in range(20):
                audit.append("bench", "footage.read", f"cam-{i:03d}", {"h": h})
            c0, w0, s0 = _cpu(), time.monotonic(), proc_cpu(sw.proc.pid if sw.proc else None)
            res = run_seal(engine, clock, spool, signer, actor="bench")
            c1, w1 = _cpu(), time.monotonic()
            uploaded = spool.upload_once()
            c2, w2, s2 = _cpu(), time.monotonic(), proc_cpu(sw.proc.pid if sw.proc else None)
            seal = res.summary["seals"][-1]
            size = next(v.size for v in store.list_versions("seals/") if v.key == seal["key"])
            runs.append({"rows": n, "seals": len(res.summary["seals"]), "objects_uploaded": uploaded,
                         "seal_cpu_s": round(c1 - c0, 3), "upload_cpu_s": round(c2 - c1, 3),
                         "cpu_s": round(c2 - c0, 3), "wall_s": round(w2 - w0, 3), "seal_wall_s": round(w1 - w0, 3),
                         "seaweed_cpu_s": round(s2 - s0, 3), "object_bytes": size, "status": res.status})
            console.print(f"hour {h + 1}: {runs[-1]}")
    finally:
        engine.dispose()
        sw.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    cpu = round(statistics.median(r["cpu_s"] for r in runs), 3)
    recorder_h = a.recorder_cpu_per_stream_min * 60 * a.cameras
    share = cpu / recorder_h
    weed = round(statistics.median(r["seaweed_cpu_s"] for r in runs), 3)
    seaweed_h = SEAWEED_CPU_PER_MIN_AT_100 * 60 * a.cameras / 100
    objects_h = statistics.median(r["objects_uploaded"] for r in runs)
    result = {
        "cameras": a.cameras, "segment_seconds": a.segment_seconds, "hours": a.hours, "runs": runs,
        "seal_cpu_s_per_hour": cpu, "recorder_cpu_s_per_hour": round(recorder_h, 1), "share": round(share, 5),
        "seaweed_cpu_s_per_hour_for_seals": weed, "seaweed_cpu_s_per_hour_for_footage": round(seaweed_h, 1),
        "share_with_store": round((cpu + weed) / (recorder_h + seaweed_h), 5),
        "seal_objects_per_hour": objects_h, "footage_objects_per_hour": int(a.cameras * 3600 / a.segment_seconds),
        "seal_object_bytes": statistics.median(r["object_bytes"] for r in runs),
        "goal_share": GOAL_SHARE, "met": share <= GOAL_SHARE,
        "database": "postgresql" if a.database_url else "sqlite", "load_avg": os.getloadavg(),
    }
    t = Table(title=f"seal overhead: {a.cameras} cameras, {a.segment_seconds:g} s segments")
    t.add_column("figure")
    t.add_column("value")
    for k in ("seal_cpu_s_per_hour", "recorder_cpu_s_per_hour", "share", "seaweed_cpu_s_per_hour_for_seals",
              "share_with_store", "seal_objects_per_hour", "footage_objects_per_hour", "seal_object_bytes", "met"):
        t.add_row(k, str(result[k]))
    console.print(t)
    out = OUT / f"seal-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    console.print(f"results: {out}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
