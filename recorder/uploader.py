"""Spool -> storage -> index, per camera in order, retrying for as long as it takes.

Procedure for one committed segment (spool invariants I1-I3):

1. ``pending``: if an earlier attempt may have stored it (crash after PUT),
   look it up by key and sha256; else PUT with COMPLIANCE retain-until and
   read the lock back (storage.S3ObjectStore.put_segment).
2. Insert the index row (idempotent on key + version).  Only when it cannot
   go in now (database down) is ``stored`` (version id, retain-until) written
   to the spool record, so later passes index it without a look-up; a crash
   before step 3 leaves the record ``pending`` and step 1's look-up finds the
   stored version.
3. Release the spool files: bytes first, record last.

A storage outage stops step 1 for that camera (order is kept) and is retried
with backoff.  A database outage stops step 2 only: uploads go on, the rows
are written when the database returns.  Gaps journaled in the spool are
indexed the same way.
"""

from __future__ import annotations

import collections
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from index.models import Gap, Segment
from index.queries import IndexStore
from labwitness.clock import Clock, SystemClock, utc_ms
from labwitness.errors import IndexUnavailableError, IntegrityError, StorageError, StorageUnavailableError
from recorder.backoff import RetryGate
from recorder.metrics import RecorderMetrics
from recorder.spool import CameraSpool, Committed
from storage.base import ObjectStore
from storage.layout import parse_iso

log = logging.getLogger(__name__)

RetainUntil = Callable[[datetime], datetime]

#: the uploader's loop lists every camera's spool at least this often (seconds); in between
#: it drains only the cameras it knows have something (:meth:`Uploader.run_once`)
FULL_PASS_S = 1.0
#: close -> locked latencies kept (Uploader.latencies): 200 cameras x 10 s segments x 8 min
LATENCIES_KEPT = 10_000


def segment_row(c: Committed) -> Segment:
    m = c.meta
    return Segment(
        camera_id=m.camera_id, start_ms=utc_ms(m.start), end_ms=utc_ms(m.end), media_duration_ms=m.media_duration_ms,
        key=m.key, version_id=c.version_id or "", size=m.size, sha256=m.sha256,
        retain_until_ms=utc_ms(c.retain_until) if c.retain_until else None, lock_mode=c.lock_mode,
        codec=m.codec, audio_codec=m.audio_codec, width=m.width, height=m.height, frames=m.frames,
        session_id=m.session_id, sequence=m.sequence, recorder_id=m.recorder_id,
        node_id=m.recorder_id or None, epoch=m.epoch or None,
    )


class Uploader:
    def __init__(self, spools: Callable[[], list[CameraSpool]], store: ObjectStore, index: IndexStore,
                 retain_until: RetainUntil, *, clock: Clock | None = None, stop: threading.Event | None = None,
                 metrics: RecorderMetrics | None = None, backoff_cap_s: float = 10.0, upload_workers: int = 4) -> None:
        self.spools = spools
        self.store = store
        self.index = index
        self.retain_until = retain_until
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.metrics = metrics or RecorderMetrics()
        self.wake = threading.Event()
        # one gate per resource: a storage outage holds up PUTs, a database outage only the rows
        self._store_gate = RetryGate(initial_s=0.5, cap_s=backoff_cap_s)
        self._index_gate = RetryGate(initial_s=0.5, cap_s=backoff_cap_s)
        self.last_error: str = ""
        self.closed_at: dict[tuple[str, int], float] = {}  # segments committed by this process
        self._attempted: set[tuple[str, int]] = set()
        #: the most recent close -> locked latencies in seconds (for bench/record); bounded, so a
        #: recorder running for months holds no more of them than a benchmark run makes
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCIES_KEPT)
        self.locked_segments = 0  # segments whose latency was measured, ever (latencies keeps the last ones)
        # One pass at a time: drain() from a stopping service and the thread's
        # own loop must never upload the same segment twice.
        self._pass = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=upload_workers, thread_name_prefix="upload")
        self._count_lock = threading.Lock()
        #: segments (and their bytes) this process stored, locked, indexed and released from the spool
        self.done_segments = 0
        self.done_bytes = 0
        #: cameras with a segment committed (``notify``) since their spool was last drained,
        #: and cameras whose last drain left something waiting; a partial pass drains only these
        self._dirty: set[str] = set()
        self._waiting: set[str] = set()
        self._full_at = float("-inf")

    def notify(self, c: Committed) -> None:
        self.closed_at[(c.meta.camera_id, c.seq)] = time.monotonic()
        with self._count_lock:
            self._dirty.add(c.meta.camera_id)
        self.wake.set()

    # -- loop ------------------------------------------------------------------
    def run(self) -> None:
        while not self.stop.is_set():
            self.wake.clear()
            try:
                busy = self.run_once(full=False)
            except Exception:
                log.exception("uploader pass failed")
                busy = False
            # waiting on a backoff: look again soon, but never spin
            self.wake.wait(0.25 if busy else 1.0)

    def backlog(self) -> int:
        return sum(len(s.committed()) for s in self.spools())

    def oldest_waiting_end(self):
        """End time of the oldest segment not yet stored and indexed (None: nothing
        waiting); health reports ``now - this`` as the upload lag."""
        ends = []
        for s in self.spools():
            items = s.committed()
            if items:
                ends.append(items[0].meta.end)
        return min(ends, default=None)

    def run_once(self, full: bool = True) -> bool:
        """One pass over every camera's spool; True if anything is still waiting.

        ``full=False`` (the uploader's own loop): between full passes, at most one
        every :data:`FULL_PASS_S`, only the cameras that committed a segment or
        still had one waiting are drained.  Listing every camera's spool directory
        on every wake-up (one per segment committed) was most of the uploader's own
        work with a few hundred cameras; a full pass still finds whatever reached a
        spool otherwise (gaps, segments of an earlier run)."""
        with self._pass:
            return self._pass_once(full)

    def _pass_once(self, full: bool) -> bool:
        # Cameras are drained in parallel (each camera's order is kept inside
        # _drain_camera), so one slow PUT does not hold up every other camera.
        spools = self.spools()
        now = time.monotonic()
        full = full or now - self._full_at >= FULL_PASS_S
        with self._count_lock:
            wanted, self._dirty = self._dirty, set()
        if full:
            self._full_at = now
        else:
            wanted |= self._waiting
            spools = [s for s in spools if s.camera_id in wanted]
        results = list(self._pool.map(self._drain_camera, spools))
        if full:
            self._waiting.clear()
        for s, (waiting, _) in zip(spools, results):
            (self._waiting.add if waiting else self._waiting.discard)(s.camera_id)
        # a partial pass skips only cameras known to hold nothing: what it saw is the backlog
        self.metrics.spool_backlog.set(sum(n for _, n in results))
        if spools:
            self.metrics.spool_bytes.set(spools[0].quota.used)
        return bool(self._waiting)

    def _drain_camera(self, spool: CameraSpool) -> tuple[bool, int]:
        """(still waiting, segments seen) for one camera, oldest first."""
        items = spool.committed()
        for c in items:
            if self.stop.is_set():
                return True, len(items)
            if not self._advance(spool, c):
                self._index_gaps(spool)
                return True, len(items)  # keep this camera's order: nothing after a stuck segment
        self._index_gaps(spool)
        return False, len(items)

    def _advance(self, spool: CameraSpool, c: Committed) -> bool:
        now = self.clock.monotonic()
        just_stored = False
        if c.state == "pending":
            if not self._store_gate.is_open(now):
                return False
            try:
                key = (spool.camera_id, c.seq)
                # Only a segment this process has never tried to PUT can skip the
                # look-up; after a restart or a failed attempt it may be stored already.
                maybe_stored = key not in self.closed_at or key in self._attempted
                self._attempted.add(key)
                stored = (self.store.find_segment(c.meta) if maybe_stored else None) or self.store.put_segment(
                    c.mp4, c.meta, self.retain_until(c.meta.end))
            except StorageUnavailableError as e:
                self._store_failed(str(e))
                return False
            except IntegrityError:
                log.exception("spool %s: segment %d failed its integrity check; kept in spool, NOT uploaded", spool.camera_id, c.seq)
                self.metrics.upload_errors.labels("integrity").inc()
                return False
            except StorageError as e:
                self._store_failed(str(e))
                return False
            self._store_gate.succeeded()
            self.last_error = ""
            # In memory only for now: when the row goes in at once (below) the record is
            # released unrewritten, one fsynced write fewer per segment.  A crash before
            # the release leaves it "pending", and a restart finds the stored version by
            # key and SHA-256 (step 1) instead of sending it again.
            c.state, c.version_id, c.retain_until, c.lock_mode = "stored", stored.version_id, stored.retain_until, stored.mode
            just_stored = True
            self.metrics.uploaded.labels(spool.camera_id).inc()
            self._attempted.discard(key)
            t0 = self.closed_at.pop(key, None)
            if t0 is not None:
                latency = time.monotonic() - t0
                self.metrics.close_to_locked.observe(latency)
                with self._count_lock:  # upload workers run in parallel
                    self.latencies.append(latency)
                    self.locked_segments += 1
        if not c.indexed:
            if not self._index_gate.is_open(now):
                self._keep_stored(spool, c, just_stored)
                return True  # stored; the row follows when the database is back
            try:
                self.index.add_segment(segment_row(c))
            except IndexUnavailableError as e:
                self._index_failed(str(e))
                self._keep_stored(spool, c, just_stored)
                return True
            self._index_gate.succeeded()
            c.indexed = True
            self.metrics.indexed.labels(spool.camera_id).inc()
        spool.release(c)
        with self._count_lock:  # upload workers run in parallel
            self.done_segments += 1
            self.done_bytes += c.meta.size
        return True

    @staticmethod
    def _keep_stored(spool: CameraSpool, c: Committed, just_stored: bool) -> None:
        """The row must wait: record "stored" (version, retain-until) in the spool, so the
        next passes index it without looking the object up again."""
        if just_stored:
            spool.mark_stored(c, c.version_id or "", c.retain_until, c.lock_mode)

    def _index_gaps(self, spool: CameraSpool) -> None:
        if not self._index_gate.is_open(self.clock.monotonic()):
            return
        for path, g in spool.finished_gaps():
            try:
                self.index.add_gap(Gap(camera_id=g["camera_id"], start_ms=utc_ms(parse_iso(g["start"])),
                                       end_ms=utc_ms(parse_iso(g["end"])), reason=g["reason"], detail=g.get("detail", ""),
                                       node_id=g.get("node_id") or None, epoch=g.get("epoch") or None))
            except IndexUnavailableError as e:
                self._index_failed(str(e))
                return
            Path(path).unlink(missing_ok=True)

    def _store_failed(self, msg: str) -> None:
        delay = self._failed(self._store_gate, "storage", msg)
        log.warning("object store unavailable, retrying in %.1fs (footage stays in the spool): %s", delay, msg)

    def _index_failed(self, msg: str) -> None:
        delay = self._failed(self._index_gate, "index", msg)
        log.warning("index database unavailable, retrying in %.1fs (rows kept in the spool): %s", delay, msg)

    def _failed(self, gate: RetryGate, kind: str, msg: str) -> float:
        """Count one failed attempt (``upload_errors{kind}``) and close ``gate`` until its retry; the delay."""
        self.last_error = msg
        self.metrics.upload_errors.labels(kind).inc()
        return gate.failed(self.clock.monotonic())

    def drain(self, timeout: float) -> bool:
        """Run passes until the spool is empty or ``timeout`` passes; True if empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.run_once()
            if self.backlog() == 0 and not any(True for s in self.spools() for _ in s.finished_gaps()):
                return True
            time.sleep(0.2)
        return False
