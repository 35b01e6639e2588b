"""The seal job: every ``seal_interval_h`` (1 h by default) a signed Merkle seal of what was indexed.

Procedure "seal" (one run at a time: the ``seal`` job lock):

1. take the rows not sealed yet (:mod:`index.seals`: stored segments and gaps whose
   ``seal_seq`` is NULL, oldest first, at most ``max_leaves``), the previous seal (its
   number, hash and end) and the audit chain head;
2. build the document (:mod:`retention.seal_doc`), sign its head with the lab's key
   (``signer``, injected: retention does not import the API's key handling);
3. in one database transaction: insert the ``seal`` row and mark the rows; *inside* it, put
   the object ``seals/YYYY/MM/DD/HH-{seq}.json`` into the document spool (durable on local
   disk when it returns; uploaded locked like footage, so a storage outage loses nothing).
   If the put fails the transaction rolls back and nothing is marked;
4. after the commit (of every seal of the run, see 5), hand every recorded seal not yet queued (``seal.witness_queued`` false:
   this one, and any an earlier run could not hand over) to the witness outbox (``witness``, when
   wired; its ``enqueue`` is idempotent) and mark it queued.  Not inside the transaction: the
   outbox writes to the same database, which on SQLite would wait for our own write lock;
5. if ``max_leaves`` rows were taken, seal again (a backlog becomes several seals, none huge).

"Stored in that hour" therefore means *indexed since the previous seal*: a segment that
waited in a spool backlog for a day is sealed by the first seal after it reached the index,
never skipped, and its leaf still names its own start and end.  The seal's ``period`` is
[previous seal's creation, this seal's creation).

Crash points: before 3 commits nothing is marked and the next run seals the same rows.  A
crash after the spool put but before the commit leaves a seal object in storage that the
index never recorded; the next seal reuses its number and chains from the recorded seal.
``labwitness seal verify`` reports such an object as not part of the chain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from sqlalchemy.engine import Engine

from index.audit import AuditLog
from index.models import Seal
from index.seals import SealStore
from labwitness.clock import Clock, utc_ms
from labwitness.errors import LabwitnessError
from retention import seal_doc
from retention.runs import JobRecorder, JobResult, exclusive
from storage.base import ObjectStore

log = logging.getLogger(__name__)

DEFAULT_MAX_LEAVES = 200_000  # ~5.5 h of 100 cameras at 10 s; a seal object of ~50 MB at most


class DocumentSink(Protocol):
    """Where seal objects go: ``storage.doc_spool.DocumentSpool`` (spool -> locked upload)."""

    def put(self, key: str, data: bytes, *, content_type: str = "application/json",
            metadata: dict[str, str] | None = None) -> None: ...


class WitnessOutbox(Protocol):
    """Hands a signed seal to the witnesses outside the box (``retention.witness.WitnessOutbox``):
    ``body`` is the seal's canonical head, ``signature`` the lab key's over it, ``key_id`` that key."""

    def enqueue(self, doc_id: str, body: bytes, signature: str, key_id: str) -> None: ...


@dataclass(frozen=True)
class SealSigner:
    """The lab's Ed25519 key as the seal job sees it (built from ``api.evidence.SigningKey``)."""

    key_id: str
    public_pem: bytes
    sign: Callable[[bytes], str]


def _queue_for_witnesses(store: SealStore, witness: WitnessOutbox) -> int:
    """Enqueue every recorded seal the outbox has not taken yet (crash-safe: marked after)."""
    n = 0
    for row in store.not_witness_queued():
        witness.enqueue(witness_id(row.seq), row.head.encode(), row.signature, row.key_id)
        store.mark_witness_queued(row.seq)
        n += 1
    return n


def witness_id(seq: int) -> str:
    """The id a seal has at the witnesses (the HTTPS witness reads it back at ``GET {url}/{id}``)."""
    return f"seal-{seq:08d}"


def resume_chain(objects: ObjectStore, store: SealStore) -> int | None:
    """An index without seals (new, or rebuilt after losing its database) next to a bucket that
    has some: record the newest stored seal, so that the next one continues its numbering and
    chain instead of starting a second chain at 1.  Its rows are not marked: a rebuilt index's
    segments are sealed again (harmless: a leaf may be in two seals).  Returns its number."""
    newest = max((v for v in objects.list_versions(seal_doc.PREFIX) if not v.is_delete_marker),
                 key=lambda v: v.key, default=None)
    if newest is None:
        return None
    with objects.open(newest.key, newest.version_id) as body:
        env = seal_doc.parse_envelope(body.read())
    head = env["head"]
    store.insert(Seal(seq=head["seq"], period_start_ms=head["period"]["start_ms"], period_end_ms=head["period"]["end_ms"],
                      created_ms=head["created_ms"], root=head["root"], doc_hash=seal_doc.head_hash(head),
                      prev_hash=head["prev_seal_hash"], object_key=newest.key, segments=head["leaves"],
                      gaps=len(head["gaps"]), head=seal_doc.canonical(head).decode(), signature=env["signature"],
                      key_id=head["key_id"], witness_queued=True))
    log.warning("the index had no seals: continuing the chain of seal %d found in storage (%s)", head["seq"], newest.key)
    return head["seq"]


@exclusive("seal")
def run_seal(engine: Engine, clock: Clock, documents: DocumentSink, signer: SealSigner, *,
             witness: WitnessOutbox | None = None, objects: ObjectStore | None = None,
             max_leaves: int = DEFAULT_MAX_LEAVES, actor: str = "scheduler") -> JobResult:
    """One seal run (procedure above).  ``objects``: the bucket, read only when the index has no
    seal yet (:func:`resume_chain`)."""
    with JobRecorder(engine, clock, "seal", actor=actor) as rec:
        store, audit = SealStore(engine), AuditLog(engine, lambda: utc_ms(clock.now()))
        if objects is not None and store.last() is None:
            resume_chain(objects, store)
        written: list[dict] = []
        while True:
            one, full = _seal_once(store, audit, clock, documents, signer, max_leaves)
            written.append(one)
            if not full:
                break
        status, queued, extra = "ok", 0, {}
        if witness is not None:
            try:
                queued = _queue_for_witnesses(store, witness)
            except LabwitnessError as e:  # the seals are stored; the hand-over is owed and retried next run
                log.error("seals not handed to the witness outbox yet: %s", e)
                status, extra = "warning", {"witness_error": str(e)[:500]}
        return rec.finish(status, {**extra, "witness_queued": queued, "seals": written,
                                   "segments": sum(s["segments"] for s in written), "gaps": sum(s["gaps"] for s in written)})


def _seal_once(store: SealStore, audit: AuditLog, clock: Clock, documents: DocumentSink, signer: SealSigner,
               max_leaves: int) -> tuple[dict, bool]:
    prev = store.last()
    rows = store.unsealed_segments(max_leaves)
    gaps = store.unsealed_gaps()
    head_ev = audit.head()
    now_ms = utc_ms(clock.now())
    seq = (prev.seq + 1) if prev else 1
    period_start = prev.period_end_ms if prev else (min((r.start_ms for r in rows), default=now_ms))
    now_ms = max(now_ms, period_start)  # a clock set back never makes a period end before it began
    leaves: dict[str, list] = {}
    for r in rows:
        leaves.setdefault(r.camera_id, []).append((r.key, r.version_id, r.sha256, r.size, r.start_ms, r.end_ms))
    doc = seal_doc.build(seq, period_start, now_ms, prev.doc_hash if prev else seal_doc.GENESIS, signer.key_id, leaves,
                         [(g.camera_id, g.start_ms, g.end_ms, g.reason) for g in gaps], head_ev)
    signature = signer.sign(doc.head_bytes)
    key = seal_doc.seal_key(now_ms, seq)
    row = Seal(seq=seq, period_start_ms=period_start, period_end_ms=now_ms, created_ms=now_ms, root=doc.head["root"],
               doc_hash=doc.hash, prev_hash=doc.head["prev_seal_hash"], object_key=key, segments=len(rows), gaps=len(gaps),
               max_segment_id=max((r.id for r in rows), default=None), head=doc.head_bytes.decode(), signature=signature,
               key_id=signer.key_id)
    with store.recording(row, rows, gaps):
        documents.put(key, doc.envelope(signature, signer.public_pem),
                      metadata={"lw-seal-seq": str(seq), "lw-seal-hash": doc.hash, "lw-seal-root": doc.head["root"]})
    log.info("seal %d written: %d segments, %d gaps, root %s", seq, len(rows), len(gaps), doc.head["root"])
    return ({"seq": seq, "key": key, "segments": len(rows), "gaps": len(gaps), "root": doc.head["root"],
             "hash": doc.hash}, len(rows) >= max_leaves)
