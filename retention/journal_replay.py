"""Reading the ``journal/`` objects back into the index (the first step of ``labwitness index rebuild``).

Objects are read in key order (= the order they were flushed, ``retention.journal``),
several GETs in flight and a bounded number waiting, so memory stays flat whatever
the journal's size.  Segments go to the index in bulk batches as they come; the
other kinds (a few thousand rows a month) are collected and written at the end, in
journal order, through ``index.restore`` (idempotent: a batch stored twice, a
version of a key stored twice or a rebuild run twice change nothing).
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, TypeVar

from index.models import ExportPackage
from index.restore import Restorer
from retention.journal import PREFIX, decode_batch
from storage.base import ObjectStore, ObjectVersion

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
SEGMENT_BATCH = 20_000
Progress = Callable[..., None]  # (done, total, phase=...)


def bounded_map(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """``pool.map`` in order with at most ``ahead`` results in flight or waiting."""
    it = iter(items)
    window: deque[Future] = deque(pool.submit(fn, x) for _, x in zip(range(ahead), it))
    while window:
        f = window.popleft()
        nxt = next(it, None)
        if nxt is not None:
            window.append(pool.submit(fn, nxt))
        yield f.result()


@dataclass
class Replayed:
    """What the journal held (counts for the run's summary)."""

    objects: int = 0
    first_ms: int | None = None  # when the journal began (its first object's flush time)
    unreadable: list[str] = field(default_factory=list)
    entries: dict[str, int] = field(default_factory=dict)
    registry_cameras: set[str] = field(default_factory=set)  # every camera the registry history names
    holds_without_version: int = 0


def key_time_ms(key: str) -> int:
    """The flush time a journal key names (``retention.journal.journal_key``)."""
    ts = key.rsplit("/", 1)[1].split("-", 1)[0]  # 20261203T215658966Z
    t = datetime.strptime(ts[:15], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000) + int(ts[15:18] or 0)


def journal_objects(store: ObjectStore) -> list[ObjectVersion]:
    """One version per journal key (a document stored twice is the same bytes), in key order."""
    seen: dict[str, ObjectVersion] = {}
    for v in store.list_versions(PREFIX):
        if not v.is_delete_marker and v.key not in seen:
            seen[v.key] = v
    return [seen[k] for k in sorted(seen)]


def replay_journal(store: ObjectStore, restorer: Restorer, *, workers: int = 8,
                   progress: Progress | None = None) -> Replayed:
    out = Replayed()
    objects = journal_objects(store)
    total = len(objects)
    if objects:
        out.first_ms = key_time_ms(objects[0].key)
    if progress:
        progress(0, total, phase="journal")
    later: dict[str, list[dict]] = {k: [] for k in ("gap", "test_record_revision", "revision", "audit_event",
                                                   "export_package", "hold")}
    segments: list[dict] = []
    deleted: list[dict] = []

    def fetch(v: ObjectVersion) -> tuple[ObjectVersion, list[dict] | None]:
        try:
            with store.open(v.key, v.version_id) as body:
                return v, decode_batch(body.read())
        except (OSError, ValueError, EOFError) as e:  # gzip/JSON damage: say which object, keep going
            log.error("journal object %s unreadable: %s", v.key, e)
            return v, None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for done, (v, entries) in enumerate(bounded_map(pool, fetch, objects, ahead=4 * max(1, workers)), start=1):
            out.objects += 1
            if entries is None:
                out.unreadable.append(v.key)
                continue
            for e in entries:
                kind = e.get("kind")
                out.entries[kind] = out.entries.get(kind, 0) + 1
                if kind == "segment":
                    segments.append(e["body"])
                    if len(segments) >= SEGMENT_BATCH:
                        restorer.segments(segments)
                        segments = []
                elif kind == "segment_deleted":  # always journaled after the segment's insert
                    deleted.append(e["body"])
                    if len(deleted) >= SEGMENT_BATCH:
                        restorer.segments(segments)
                        restorer.delete_segments(deleted)
                        segments, deleted = [], []
                elif kind in later:
                    later[kind].append(e["body"])
                else:
                    log.warning("journal object %s: unknown entry kind %r skipped", v.key, kind)
            if progress:
                progress(done, total, phase="journal")
    restorer.segments(segments)
    restorer.delete_segments(deleted)
    out.registry_cameras = restorer.registry(later["revision"])
    restorer.gaps(later["gap"])
    restorer.test_records(later["test_record_revision"])
    restorer.audit_events(later["audit_event"])
    restorer.latest(ExportPackage.__table__, later["export_package"])
    out.holds_without_version = restorer.holds(later["hold"])
    restorer.fix_sequences()
    return out
