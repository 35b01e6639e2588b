"""The journal's transactional outbox: every change to the evidence tables is also
written, in the same transaction, as a row of ``journal_outbox``.

Procedure "capture" (an SQLAlchemy ``after_flush`` listener on every ORM session,
installed by :func:`install_journal_capture`, which ``index.db.make_engine`` calls):

1. after the session flushed its changes, and before it commits, look at what it
   inserted or changed among the journaled models (:data:`JOURNALED`);
2. for each, the whole row as flushed (primary key included, so a rebuild restores the
   same ids) becomes one ``journal_outbox`` row (kind, at_ms, JSON body), inserted on
   the session's own connection: it commits if and only if the change commits.

No writer had to change.  What is journaled and why:

- ``segment`` inserts (the rest of a segment row is job bookkeeping: lock/integrity
  marks, content marks, the sweep's ``garbage``), and ``segment_deleted`` — written by
  the sweep itself (:func:`journal_rows`, a Core delete in its own transaction) for
  every version it deleted, so the rebuild need not list all footage to learn that;
- ``gap`` inserts and updates (an open gap's end grows);
- ``test_record_revision`` inserts (before/after in full: the record is the newest
  revision's ``after``);
- ``revision`` inserts (the registry's history: areas, cameras, equipment and their
  links; ``index.registry.snapshot`` already keeps every credential out of them);
- ``audit_event`` inserts (with ``prev_hash``, ``hash`` and ``mac``);
- ``export_package`` inserts and every change other than its progress heartbeat;
- ``hold`` inserts and updates (placed, released), with the held segment's key and
  version, so a hold finds its version again even when the segment's id differs.

The drain into the locked bucket is ``retention.journal`` (index may not import
storage); the replay is ``retention.rebuild`` with ``index.restore``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as OrmSession

from index.models import (
    AuditEvent, ExportPackage, Gap, Hold, JournalOutbox, Revision, Segment, TestRecordRevision,
)

#: model -> (journal kind, journal updates too?)
JOURNALED: dict[type, tuple[str, bool]] = {
    Segment: ("segment", False),
    Gap: ("gap", True),
    TestRecordRevision: ("test_record_revision", False),
    Revision: ("revision", False),
    AuditEvent: ("audit_event", False),
    ExportPackage: ("export_package", True),
    Hold: ("hold", True),
}
KINDS = tuple(k for k, _ in JOURNALED.values())
#: columns whose change alone is not worth an entry (an export's heartbeat, every few seconds)
_HEARTBEAT = {ExportPackage: {"progress", "updated_ms", "heartbeat_at_ms"}}
#: never journaled, whatever model they appear on (defence in depth: none of the journaled
#: models has them; the registry keeps them out of revisions)
SECRET_COLUMNS = frozenset({"password_enc", "url_secrets_enc", "sub_url_secrets_enc", "token_hash"})

_installed = False
_install_lock = threading.Lock()


def row_body(obj: Any) -> dict[str, Any]:
    """Every column of ``obj`` as flushed, by column name."""
    mapper = inspect(obj).mapper
    return {a.columns[0].name: getattr(obj, a.key) for a in mapper.column_attrs
            if a.columns[0].name not in SECRET_COLUMNS}


def _changed(obj: Any, model: type) -> bool:
    state = inspect(obj)
    quiet = _HEARTBEAT.get(model, set())
    return any(state.attrs[a.key].history.has_changes() for a in state.mapper.column_attrs if a.key not in quiet)


def _entries(session: OrmSession) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    out: list[tuple[int, int, dict[str, Any]]] = []
    for obj, is_new in [(o, True) for o in session.new] + [(o, False) for o in session.dirty]:
        model = type(obj)
        spec = JOURNALED.get(model)
        if spec is None or (not is_new and not (spec[1] and _changed(obj, model))):
            continue
        body = row_body(obj)
        if model is Hold:
            seg = Segment.__table__
            row = session.connection().execute(
                select(seg.c.key, seg.c.version_id).where(seg.c.id == obj.segment_id)).first()
            body["segment_key"], body["segment_version_id"] = (row[0], row[1]) if row else ("", "")
        entry = {"kind": spec[0], "at_ms": now, "body": json.dumps(body, ensure_ascii=False, sort_keys=True)}
        out.append((KINDS.index(spec[0]), body.get("id") or 0, entry))
    # one transaction's entries in a stable order (by kind, then by id)
    return [e for _, _, e in sorted(out, key=lambda t: t[:2])]


def journal_rows(conn: Connection, kind: str, bodies: list[dict[str, Any]]) -> None:
    """Outbox entries written by a Core writer on its own connection, in its transaction
    (the sweep's ``segment_deleted``: which versions it deleted)."""
    if bodies:
        now = int(time.time() * 1000)
        conn.execute(insert(JournalOutbox.__table__), [
            {"kind": kind, "at_ms": now, "body": json.dumps(b, ensure_ascii=False, sort_keys=True)} for b in bodies])


def _after_flush(session: OrmSession, _ctx: Any) -> None:
    entries = _entries(session)
    if entries:
        session.connection().execute(insert(JournalOutbox.__table__), entries)


def install_journal_capture() -> None:
    """Install the capture listener on every ORM session (idempotent, explicit: not at import)."""
    global _installed
    with _install_lock:
        if not _installed and not event.contains(OrmSession, "after_flush", _after_flush):
            event.listen(OrmSession, "after_flush", _after_flush)
        _installed = True
