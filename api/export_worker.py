"""Export workers: the jobs nodes' side of the export queue (docs/jobs.md).

Each worker is a :class:`~labwitness.periodic.PeriodicWorker`: every ``export_poll_s``
it claims queued exports from the index (``index.exports.ExportStore.claim``: ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL) one at a time and builds each
(:meth:`api.exporter.Exporter.run`, which heartbeats and fences every write by its
claim).  A worker killed mid-build leaves a ``running`` row whose heartbeat goes stale;
after ``export_stale_s`` any worker claims it again and builds it from the start (the
hold rows it finds are reused; the package comes out the same).  A worker stopped
gracefully mid-build puts its export back in the queue at once.

``worker_id`` names node, process and worker (``node/pid/n``): two workers never share
a claim even on one host.
"""

from __future__ import annotations

import logging
import os
import threading

from index.exports import Claim
from labwitness.errors import IndexUnavailableError, StorageError
from labwitness.periodic import PeriodicWorker

from api.exporter import Exporter

log = logging.getLogger(__name__)


def worker_id(node_id: str, n: int) -> str:
    return f"{node_id}/{os.getpid()}/{n}"


class ExportWorker(PeriodicWorker):
    name = "export-worker"
    retry_on = (IndexUnavailableError, StorageError)
    failed_message = "导出队列不可用，%.0f 秒后重试 / export queue unavailable, retrying in %.0f s: %s"

    def __init__(self, exporter: Exporter, worker: str, *, poll_s: float = 1.0, backoff_cap_s: float = 30.0,
                 stop: threading.Event | None = None) -> None:
        super().__init__(interval_s=poll_s, backoff_cap_s=backoff_cap_s, first_delay_s=min(poll_s, 0.5), stop=stop)
        self.exporter = exporter
        self.worker = worker
        self.current: Claim | None = None
        self.built = 0

    def run_once(self) -> int:
        """Claim and build exports until the queue has none free (or the worker stops)."""
        n = 0
        while not self.stop_event.is_set():
            claim = self.exporter.claim(self.worker)
            if claim is None:
                break
            log.info("export %s claimed by %s (attempt %d)", claim.package_id, claim.worker, claim.attempt)
            self.current = claim
            try:
                self.exporter.run(claim)
            finally:
                self.current = None
            n += 1
            self.built += 1
        return n

    def final_pass(self) -> int:
        """At stop: no new export; one still being built goes back to the queue for another worker."""
        claim = self.current
        if claim is not None:
            try:
                if self.exporter.exports.release_claim(claim):
                    log.info("export %s handed back to the queue at stop", claim.package_id)
            except IndexUnavailableError as e:  # its heartbeat goes stale instead; another worker takes it then
                log.warning("export %s not handed back (%s); it is taken over once its heartbeat is stale",
                            claim.package_id, e)
        return 0


def build_here(exporter: Exporter, worker: str, package_id: str) -> threading.Thread | None:
    """Build one queued export in this process (the CLI, with or without jobs nodes around):
    a thread running it if this process claimed it, None if a worker elsewhere has it."""
    claim = exporter.claim(worker, package_id)
    if claim is None:
        return None
    t = threading.Thread(target=exporter.run, args=(claim,), name=f"export-{package_id[:8]}", daemon=True)
    t.start()
    return t
