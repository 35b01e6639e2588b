"""Small locked documents (journal batches, seals): local spool first, then the locked bucket.

Footage goes spool -> storage -> index (recorder.uploader); the documents that
make the evidence independent of the database take the same path, so a storage
outage loses none of them.  Layout::

    ROOT/{n:020d}.doc    the document's bytes
    ROOT/{n:020d}.json   its commit record: key, content type, metadata, sha256, size, created

Invariants:

D1. ``n.json`` exists only after ``n.doc`` is complete and fsynced, and its
    sha256 and size describe those bytes: ``put`` returns only then, so a caller
    may drop its own copy (e.g. the journal's outbox rows) once ``put`` returned.
D2. ``n.doc`` is deleted only after its object is stored with COMPLIANCE
    retention read back at least the retain-until asked for; ``n.json`` after it.
D3. A ``.doc`` without its ``.json`` is a ``put`` that never returned (a crash
    mid-write): its caller still holds the data, so it is removed at start.

Documents are uploaded in the order they were put (``n`` grows with time).  A
crash after the PUT and before step D2's delete stores the document twice (two
versions of one key, same bytes): readers of ``journal/`` and ``seals/`` treat
repeats as one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from labwitness.clock import Clock
from labwitness.errors import ObjectLockError, StorageError
from labwitness.periodic import PeriodicWorker
from labwitness.private_fs import fsync_dir, private_dir, write_atomic
from storage.base import ObjectStore
from storage.layout import iso_ms, parse_iso

log = logging.getLogger(__name__)

RetainUntil = Callable[[datetime], datetime]




class DocumentSpool:
    """Durable local queue of documents bound for the locked bucket (invariants D1-D3)."""

    def __init__(self, root: Path, store: ObjectStore, retain_until: RetainUntil, clock: Clock) -> None:
        self.root = private_dir(root)
        self.store = store
        self.retain_until = retain_until
        self.clock = clock
        self._lock = threading.Lock()  # one upload pass at a time; put() is safe beside it
        self._last_n = 0
        self._n_lock = threading.Lock()
        for doc in self.root.glob("*.doc"):  # D3
            if not doc.with_suffix(".json").exists():
                log.warning("document spool: removing %s, a write that never finished", doc.name)
                doc.unlink(missing_ok=True)
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def _next_n(self) -> int:
        with self._n_lock:  # unique and growing even when two puts share a nanosecond
            n = max(time.time_ns(), self._last_n + 1)
            self._last_n = n
            return n

    def put(self, key: str, data: bytes, *, content_type: str = "application/json",
            metadata: dict[str, str] | None = None) -> None:
        """Keep ``data`` for upload as ``key``; durable on local disk when this returns (D1)."""
        if key.startswith("v1/"):
            raise ValueError("documents never go under the footage prefix v1/")
        n = self._next_n()
        doc = self.root / f"{n:020d}.doc"
        write_atomic(doc, data)
        record = {"key": key, "content_type": content_type, "metadata": metadata or {},
                  "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "created": iso_ms(self.clock.now())}
        write_atomic(doc.with_suffix(".json"), json.dumps(record, sort_keys=True).encode())
        fsync_dir(self.root)

    def _records(self) -> list[Path]:
        return sorted(self.root.glob("*.json"))

    def backlog(self) -> tuple[int, float | None]:
        """(documents waiting, age in seconds of the oldest)."""
        records = self._records()
        if not records:
            return 0, None
        try:
            created = parse_iso(json.loads(records[0].read_text())["created"])
        except (OSError, ValueError, KeyError):
            return len(records), None
        return len(records), max(0.0, (self.clock.now() - created).total_seconds())

    def upload_once(self, limit: int = 200) -> int:
        """Upload up to ``limit`` waiting documents in order; returns how many were stored.

        Stops at the first failure (order is kept) and raises it: StorageUnavailableError
        while the store is down, another StorageError when it refuses."""
        done = 0
        with self._lock:
            for rec_path in self._records()[:limit]:
                rec = json.loads(rec_path.read_text())
                doc = rec_path.with_suffix(".doc")
                data = doc.read_bytes()
                if hashlib.sha256(data).hexdigest() != rec["sha256"]:
                    # local corruption: say so loudly and keep the file for an operator
                    raise StorageError(f"文档缓存已损坏 / spooled document {doc} no longer matches its sha256; "
                                       "kept for inspection")
                until = self.retain_until(parse_iso(rec["created"]))
                meta = {**rec["metadata"], "lw-sha256": rec["sha256"]}
                stored = self.store.put_file(rec["key"], doc, until, content_type=rec["content_type"], metadata=meta)
                if self.store.info.retention_enforced and (
                        stored.retain_until is None or stored.retain_until < until.replace(microsecond=0)):
                    raise ObjectLockError(f"{rec['key']}: retention read back as {stored.retain_until}, "
                                          f"expected >= {until}")
                doc.unlink()  # D2: bytes first, record last
                rec_path.unlink()
                fsync_dir(self.root)
                done += 1
        return done


class DocumentUploader(PeriodicWorker):
    """Worker: uploads the document spool whenever it holds something, backing off while storage fails."""

    name = "document-uploader"
    retry_on = (StorageError,)
    failed_message = "文档上传失败，%.0f 秒后重试 / document upload failed, retrying in %.0f s: %s"
    left_message = "documents left in the spool for the next start: %s"

    def __init__(self, spool: DocumentSpool, *, stop: threading.Event | None = None, interval_s: float = 2.0,
                 backoff_cap_s: float = 30.0) -> None:
        super().__init__(interval_s=interval_s, backoff_cap_s=backoff_cap_s, first_delay_s=0.0, stop=stop)
        self.spool = spool

    def run_once(self) -> int:
        return self.spool.upload_once()

    def final_pass(self) -> int:
        return self.spool.upload_once(limit=10_000)
