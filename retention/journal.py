"""The journaler: drains the index's outbox (``index.journal``) into ``journal/`` objects
in the locked bucket, so nothing of the evidence lives only in the database.

Procedure "flush" (:meth:`Journaler.run_once`, every ``journal_interval_s``, holding the
``journal`` job lock so that ``serve`` and a CLI never drain at once):

1. take up to ``batch`` outbox rows in id order;
2. write them as ONE object, one JSON line per entry (``{"id", "kind", "at_ms",
   "body"}``), gzip-compressed, through the document spool (``DocumentSpool.put``:
   durable on local disk when it returns; the uploader stores it with COMPLIANCE
   retention and reads the lock back, retrying while storage is down);
3. THEN delete exactly those outbox rows (by id: a row committed late with a lower id
   is taken by the next flush, not lost).

A crash between 2 and 3 journals the batch twice; the rebuild is idempotent (every
entry carries its row's primary key).  Key:
``journal/{YYYY}/{MM}/{DD}/{HH}/{ts}-{recorder_id}-{first_id}-{last_id}.jsonl.gz``,
``ts`` = the flush's UTC time (``%Y%m%dT%H%M%S%fZ``), so key order is time order.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from index.joblock import job_lock
from index.models import JournalOutbox
from index.queries import db_errors
from labwitness.clock import Clock, utc_ms
from labwitness.errors import IndexUnavailableError, JobRefusedError, StorageError
from labwitness.periodic import PeriodicWorker
from storage.doc_spool import DocumentSpool

log = logging.getLogger(__name__)

PREFIX = "journal/"
LOCK = "journal"
DEFAULT_BATCH = 5000
OUTBOX = JournalOutbox.__table__


def journal_key(at_ms: int, recorder_id: str, first_id: int, last_id: int) -> str:
    t = datetime.fromtimestamp(at_ms / 1000, timezone.utc)
    return (f"{PREFIX}{t:%Y/%m/%d/%H}/{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z-{recorder_id}"
            f"-{first_id:012d}-{last_id:012d}.jsonl.gz")


def encode_batch(rows: list[dict]) -> bytes:
    """A batch as gzip'd JSON lines (``body`` as the object it is, not a string)."""
    lines = (json.dumps({"id": r["id"], "kind": r["kind"], "at_ms": r["at_ms"], "body": json.loads(r["body"])},
                        ensure_ascii=False, sort_keys=True, separators=(",", ":")) for r in rows)
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)


def decode_batch(data: bytes) -> list[dict]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


@dataclass(frozen=True)
class Backlog:
    entries: int
    oldest_age_s: float | None


def outbox_backlog(engine: Engine, now_ms: int) -> Backlog:
    """Entries waiting in the outbox and the age of the oldest (health, metrics)."""
    with db_errors(), engine.connect() as conn:
        n, oldest = conn.execute(select(func.count(), func.min(OUTBOX.c.at_ms))).one()
    return Backlog(int(n), max(0.0, (now_ms - oldest) / 1000) if oldest is not None else None)


class Journaler(PeriodicWorker):
    """Worker: drains the outbox into the document spool every ``interval_s``, with backoff."""

    name = "journaler"
    retry_on = (IndexUnavailableError, StorageError, OSError)
    failed_message = "日志写出失败，%.0f 秒后重试 / journal flush failed, retrying in %.0f s: %s"
    left_message = "journal entries left in the outbox for the next start: %s"

    def __init__(self, engine: Engine, spool: DocumentSpool, clock: Clock, recorder_id: str, *,
                 interval_s: float = 60.0, batch: int = DEFAULT_BATCH, backoff_cap_s: float = 60.0,
                 stop: threading.Event | None = None) -> None:
        super().__init__(interval_s=interval_s, backoff_cap_s=backoff_cap_s, stop=stop)
        self.engine = engine
        self.spool = spool
        self.clock = clock
        self.recorder_id = recorder_id
        self.batch = batch
        self.objects_written = 0

    def run_once(self) -> int:
        """Drain the whole outbox, one object per ``batch`` entries; returns entries journaled.
        Another process draining now: nothing to do (0)."""
        done = 0
        try:
            with job_lock(self.engine, LOCK):
                while True:
                    with db_errors(), self.engine.connect() as conn:
                        rows = [dict(r._mapping) for r in conn.execute(
                            select(OUTBOX).order_by(OUTBOX.c.id).limit(self.batch))]
                    if not rows:
                        break
                    key = journal_key(utc_ms(self.clock.now()), self.recorder_id, rows[0]["id"], rows[-1]["id"])
                    self.spool.put(key, encode_batch(rows), content_type="application/gzip",
                                   metadata={"lw-journal-entries": str(len(rows))})
                    with db_errors(), self.engine.begin() as conn:  # only after put() returned (durable)
                        conn.execute(delete(OUTBOX).where(OUTBOX.c.id.in_([r["id"] for r in rows])))
                    done += len(rows)
                    self.objects_written += 1
                    if len(rows) < self.batch:
                        break
        except JobRefusedError:
            return done  # the other process drains
        self.last_error = ""
        return done
