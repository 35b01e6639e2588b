"""The witness outbox's rows: documents to send outside the box and one delivery per
(document, witness), pending until the witness confirmed it.

Writes are idempotent (a document is keyed by its id, a delivery by (document,
witness)), so a sealer may enqueue again after any crash.  What to send when, and
how a failure is retried, is :mod:`retention.witness`'s; this module only reads and
writes the rows.  Database faults become :class:`IndexUnavailableError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import and_, case, exists, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from index.models import WitnessDelivery, WitnessDocument
from index.queries import db_guarded
from labwitness.errors import ConflictError

DOC = WitnessDocument.__table__
DEL = WitnessDelivery.__table__
PENDING, DELIVERED = "pending", "delivered"


@dataclass(frozen=True)
class Pending:
    """One delivery still owed to a witness, with what to send."""

    id: int
    document_id: int
    doc_id: str
    witness: str
    attempts: int
    next_try_ms: int
    error_kind: str
    body: bytes
    signature: str
    key_id: str


@dataclass(frozen=True)
class Backlog:
    """What one witness is still owed (health and metrics)."""

    witness: str
    pending: int = 0
    oldest_created_ms: int | None = None  # the oldest undelivered document's creation
    refused: int = 0  # pending deliveries whose last answer was a refusal (needs an admin)
    last_error: str = ""  # of the most recent failure among the pending
    last_error_kind: str = ""
    last_delivered_ms: int | None = None
    delivered: int = 0


class WitnessRows:
    """The outbox tables on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @db_guarded
    def add(self, doc_id: str, body: bytes, signature: str, key_id: str, witnesses: Iterable[str], now_ms: int) -> int:
        """Keep the document and owe it to each witness, in one transaction; the same call
        again changes nothing.  The same id with other bytes is refused
        (:class:`ConflictError`): a document once handed out is never replaced."""
        sha = hashlib.sha256(body).hexdigest()
        names = list(witnesses)
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(select(DOC.c.id, DOC.c.sha256).where(DOC.c.doc_id == doc_id)).first()
                    if row is None:
                        doc_pk = conn.execute(insert(DOC).values(
                            doc_id=doc_id, body=body, sha256=sha, signature=signature, key_id=key_id,
                            created_ms=now_ms)).inserted_primary_key[0]
                    elif row.sha256 != sha:
                        raise ConflictError(f"见证文档 {doc_id} 已以不同内容入队 / witness document {doc_id} was "
                                            f"already queued with other bytes (sha256 {row.sha256}, now {sha}); "
                                            "it is never replaced")
                    else:
                        doc_pk = row.id
                    for w in names:
                        self._owe(conn, doc_pk, doc_id, w, now_ms)
                return doc_pk
            except sa_exc.IntegrityError:
                if attempt == 2:
                    raise
                # another process enqueued the same document at the same moment: the next pass finds its rows
        raise AssertionError("unreachable")

    @staticmethod
    def _owe(conn, doc_pk: int, doc_id: str, witness: str, now_ms: int) -> None:
        if conn.execute(select(DEL.c.id).where(DEL.c.doc_id == doc_id, DEL.c.witness == witness)).first():
            return
        conn.execute(insert(DEL).values(document_id=doc_pk, doc_id=doc_id, witness=witness, state=PENDING, attempts=0,
                                        next_try_ms=0, error_kind="", last_error="", created_ms=now_ms, receipt=""))

    @db_guarded
    def owe_all(self, witness: str, now_ms: int) -> int:
        """Owe every kept document to ``witness`` (a witness added to the configuration
        receives the whole history, oldest first); returns how many were added."""
        owed = exists().where(and_(DEL.c.document_id == DOC.c.id, DEL.c.witness == witness))
        with self.engine.connect() as conn:
            missing = conn.execute(select(DOC.c.id, DOC.c.doc_id).where(~owed).order_by(DOC.c.id)).all()
        for pk, doc_id in missing:  # one short transaction each: a long history does not hold the writer
            try:
                with self.engine.begin() as conn:
                    self._owe(conn, pk, doc_id, witness, now_ms)
            except sa_exc.IntegrityError:
                pass  # owed at the same moment by an enqueue: the same row
        return len(missing)

    @db_guarded
    def pending(self, witness: str, limit: int = 50, after_document: int = 0) -> list[Pending]:
        """The witness's undelivered documents in delivery order (oldest first)."""
        q = (select(DEL.c.id, DEL.c.document_id, DEL.c.doc_id, DEL.c.witness, DEL.c.attempts, DEL.c.next_try_ms,
                    DEL.c.error_kind, DOC.c.body, DOC.c.signature, DOC.c.key_id)
             .join(DOC, DOC.c.id == DEL.c.document_id)
             .where(DEL.c.witness == witness, DEL.c.state == PENDING, DEL.c.document_id > after_document)
             .order_by(DEL.c.document_id).limit(limit))
        with self.engine.connect() as conn:
            return [Pending(*r) for r in conn.execute(q)]

    @db_guarded
    def delivered(self, delivery_id: int, now_ms: int, receipt: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(DEL).where(DEL.c.id == delivery_id).values(
                state=DELIVERED, delivered_ms=now_ms, receipt=receipt, error_kind="", next_try_ms=0,
                attempts=DEL.c.attempts + 1))

    @db_guarded
    def failed(self, delivery_id: int, kind: str, error: str, next_try_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(DEL).where(DEL.c.id == delivery_id).values(
                error_kind=kind, last_error=error[:2000], next_try_ms=next_try_ms, attempts=DEL.c.attempts + 1))

    @db_guarded
    def backlog(self, witnesses: Iterable[str]) -> dict[str, Backlog]:
        """Per witness: pending count, oldest undelivered document, refusals, the latest error."""
        names = list(witnesses)
        out = {w: Backlog(w) for w in names}
        if not names:
            return out
        with self.engine.connect() as conn:
            pend = conn.execute(
                select(DEL.c.witness, func.count(), func.min(DOC.c.created_ms),
                       func.sum(case((DEL.c.error_kind == "refused", 1), else_=0)))
                .join(DOC, DOC.c.id == DEL.c.document_id)
                .where(DEL.c.witness.in_(names), DEL.c.state == PENDING).group_by(DEL.c.witness)).all()
            done = {w: (n, last) for w, n, last in conn.execute(
                select(DEL.c.witness, func.count(), func.max(DEL.c.delivered_ms))
                .where(DEL.c.witness.in_(names), DEL.c.state == DELIVERED).group_by(DEL.c.witness))}
            errors = {}
            for w in names:  # the failure tried most recently (its next try is the latest one set)
                e = conn.execute(select(DEL.c.last_error, DEL.c.error_kind)
                                 .where(DEL.c.witness == w, DEL.c.state == PENDING, DEL.c.error_kind != "")
                                 .order_by(DEL.c.next_try_ms.desc()).limit(1)).first()
                if e:
                    errors[w] = (e.last_error, e.error_kind)
        for w, n, oldest, refused in pend:
            out[w] = Backlog(w, n, oldest, int(refused or 0), *errors.get(w, ("", "")))
        for w, (n, last) in done.items():
            b = out[w]
            out[w] = Backlog(w, b.pending, b.oldest_created_ms, b.refused, b.last_error, b.last_error_kind, last, n)
        return out

    @db_guarded
    def deliveries(self, doc_id: str) -> list[dict]:
        """Every witness's delivery of one document (state, attempts, receipt)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(DEL).where(DEL.c.doc_id == doc_id).order_by(DEL.c.witness)).mappings().all()
        return [dict(r) for r in rows]
