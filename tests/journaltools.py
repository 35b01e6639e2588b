"""Helpers for the journal tests: table snapshots to compare an index before its loss and
after its rebuild, and reading every journal object back."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from index.models import (
    Area, AuditEvent, Camera, Equipment, EquipmentCamera, ExportPackage, Gap, Hold, Revision, Segment, TestRecord,
    TestRecordRevision,
)
from retention.journal import PREFIX, decode_batch

#: the tables a rebuild restores, and the columns it does not (and why)
COMPARED = {
    Segment: {"verified_ms", "lock_verified_ms", "content_checked_ms"},  # job marks: the jobs run again
    Gap: set(),
    TestRecord: set(),
    TestRecordRevision: set(),
    Revision: set(),
    AuditEvent: set(),
    ExportPackage: set(),
    Hold: set(),
    Area: set(),
    Camera: {"enabled", "password_enc", "url_secrets_enc"},  # back enabled, credentials re-entered by the admin
    Equipment: set(),
    EquipmentCamera: set(),
}
#: not restored: api tokens (secrets: only their hashes are stored, and a token must be
#: issued again), job runs and integrity findings (the history of job runs on the old index),
#: coverage_day / index_meta / content state and events (caches and job output, recomputed),
#: the outbox (transient)


def snapshot(engine: Engine) -> dict[str, list[dict]]:
    out = {}
    with engine.connect() as conn:
        for model, ignored in COMPARED.items():
            t = model.__table__
            rows = conn.execute(select(t).order_by(*t.primary_key.columns)).mappings()
            out[t.name] = [{k: v for k, v in r.items() if k not in ignored} for r in rows]
    return out


def empty_database(engine: Engine) -> None:
    """Drop every table (the database disk was lost); the caller migrates it again."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            for (name,) in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).all():
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


def journal_entries(store) -> list[tuple[str, dict]]:
    """(object key, entry) for every entry of every journal object version."""
    out = []
    for v in store.list_versions(PREFIX):
        if v.is_delete_marker:
            continue
        with store.open(v.key, v.version_id) as body:
            raw = body.read()
        out.extend((v.key, e) for e in decode_batch(raw))
    return out


def journal_bytes(store) -> bytes:
    """Every journal object's content, decompressed, concatenated (to search for secrets)."""
    import gzip

    parts = []
    for v in store.list_versions(PREFIX):
        with store.open(v.key, v.version_id) as body:
            raw = body.read()
        parts.append(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return b"\n".join(parts)
