"""Writing journal entries back into an empty or partial index (``labwitness index rebuild``).

Every write is idempotent (a row already there is kept: ``ON CONFLICT DO NOTHING``,
or "the later state wins" where a row changes: a gap's end, a test record's newest
revision, an export's status, a hold's release), so a batch journaled twice, a
rebuild run twice or a rebuild into a partial index end the same.  Rows keep their
journaled primary keys; :meth:`Restorer.fix_sequences` moves PostgreSQL's id
sequences past them afterwards.

Bulk paths, because a six-month, 64-camera index has ~17 M segments: SQLite takes
``executemany`` of plain tuples on the DBAPI cursor; PostgreSQL takes ``COPY`` into a
temporary table and one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per batch.
These are Core writes, not ORM flushes, so restored rows are not journaled again.

The registry comes back from its revisions (``index.registry`` writes one per
change): areas, equipment with their camera links, and cameras as registered —
enabled, without credentials (the admin enters them again; none was ever journaled).
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any, Iterable

from sqlalchemy import and_, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from index.models import (
    Area, AuditEvent, Camera, Equipment, EquipmentCamera, Gap, Hold, Revision, Segment, TestRecord,
    TestRecordRevision,
)
from index.queries import db_errors, driver_errors
from index.segment_runs import settle as settle_runs

SEG = Segment.__table__
SEG_COLUMNS = [c.name for c in SEG.columns]
#: tables whose ids the journal carries (PostgreSQL sequences fixed after a restore)
ID_TABLES = tuple(m.__table__.name for m in (Segment, Gap, TestRecordRevision, Revision, AuditEvent, Hold))
_RECORD_LISTS = ("sample_ids", "area_ids", "equipment_ids")


def _default(col) -> Any:
    d = col.default
    return d.arg if d is not None and d.is_scalar else None


_SEG_ROW = itemgetter(*SEG_COLUMNS)
_SEG_DEFAULTS = [_default(SEG.c[c]) for c in SEG_COLUMNS]


def table_row(table, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (a journaled row) restricted to ``table``'s columns; a column the journal
    does not have (written by an older version) takes its default."""
    return {c.name: body[c.name] if c.name in body else _default(c) for c in table.columns}


class Restorer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"

    def _insert(self, table):
        return (postgresql.insert(table) if self.pg else sqlite.insert(table))

    def insert_ignore(self, table, rows: list[dict[str, Any]]) -> None:
        if rows:
            with db_errors(), self.engine.begin() as conn:
                conn.execute(self._insert(table).on_conflict_do_nothing(), rows)

    # -- segments: the bulk path ------------------------------------------------------
    def segments(self, bodies: Iterable[dict[str, Any]]) -> int:
        """Insert journaled segment rows (ids kept); returns how many were given."""
        try:  # the journal carries every column: one C-level lookup per row
            rows = [_SEG_ROW(b) for b in bodies]
        except KeyError:  # written by an older version: missing columns take their defaults
            rows = [tuple(b[c] if c in b else d for c, d in zip(SEG_COLUMNS, _SEG_DEFAULTS)) for b in bodies]
        if not rows:
            return 0
        with db_errors():
            raw = self.engine.raw_connection()
            try:
                with driver_errors(self.engine.dialect, "restore segments", None):
                    cur = raw.cursor()
                    if self.pg:
                        self._pg_copy(cur, rows)
                    else:
                        cols = ",".join(SEG_COLUMNS)
                        cur.executemany(f"INSERT OR IGNORE INTO segment ({cols}) VALUES "
                                        f"({','.join('?' * len(SEG_COLUMNS))})", rows)
                    raw.commit()
            finally:
                raw.close()
        return len(rows)

    def delete_segments(self, bodies: Iterable[dict[str, Any]]) -> int:
        """Rows of versions the sweep deleted (journaled ``segment_deleted``), by key and version."""
        pairs = [{"k": b["key"], "v": b["version_id"]} for b in bodies]
        if pairs:
            with db_errors(), self.engine.begin() as conn:
                conn.execute(SEG.delete().where(and_(SEG.c.key == bindparam("k"), SEG.c.version_id == bindparam("v"))),
                             pairs)
                settle_runs(conn)
        return len(pairs)

    def _pg_copy(self, cur, rows: list[tuple]) -> None:
        cols = ",".join(SEG_COLUMNS)
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS segment_restore (LIKE segment INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY segment_restore ({cols}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        cur.execute(f"INSERT INTO segment ({cols}) SELECT {cols} FROM segment_restore ON CONFLICT DO NOTHING")

    # -- the rest: small, by primary key ------------------------------------------------
    def gaps(self, bodies: list[dict[str, Any]]) -> None:
        """Gaps by (camera, start, reason): inserted, or grown to the journaled end."""
        t = Gap.__table__
        rows = [table_row(t, b) for b in bodies]
        self.insert_ignore(t, rows)
        with db_errors(), self.engine.begin() as conn:
            for r in rows:
                conn.execute(update(t).where(and_(t.c.camera_id == r["camera_id"], t.c.start_ms == r["start_ms"],
                                                  t.c.reason == r["reason"], t.c.end_ms < r["end_ms"]))
                             .values(end_ms=r["end_ms"], detail=r["detail"]))

    def test_records(self, revisions: list[dict[str, Any]]) -> None:
        """Every revision, and each record as its newest revision's ``after``."""
        t = TestRecordRevision.__table__
        self.insert_ignore(t, [table_row(t, b) for b in revisions])
        newest: dict[str, dict[str, Any]] = {}
        for b in revisions:
            if b["record_id"] not in newest or b["revision"] > newest[b["record_id"]]["revision"]:
                newest[b["record_id"]] = b
        rec = TestRecord.__table__
        rows = []
        for rid, b in newest.items():
            content = json.loads(b["after"])
            for k in _RECORD_LISTS:
                content[k] = json.dumps(content.get(k, []), ensure_ascii=False)
            rows.append(table_row(rec, {**content, "record_id": rid, "revision": b["revision"], "updated_ms": b["at_ms"]}))
        if rows:
            ins = self._insert(rec)
            stmt = ins.on_conflict_do_update(index_elements=[rec.c.record_id],
                                             set_={c.name: ins.excluded[c.name] for c in rec.columns if c.name != "record_id"},
                                             where=rec.c.revision < ins.excluded.revision)
            with db_errors(), self.engine.begin() as conn:
                conn.execute(stmt, rows)

    def audit_events(self, bodies: list[dict[str, Any]]) -> None:
        t = AuditEvent.__table__
        self.insert_ignore(t, [table_row(t, b) for b in bodies])

    def latest(self, table, bodies: list[dict[str, Any]]) -> None:
        """Rows that change (export packages, holds): the last journaled state of each id wins."""
        rows = [table_row(table, b) for b in bodies]
        if not rows:
            return
        ins = self._insert(table)
        stmt = ins.on_conflict_do_update(index_elements=[table.c.id],
                                         set_={c.name: ins.excluded[c.name] for c in table.columns if c.name != "id"})
        with db_errors(), self.engine.begin() as conn:
            for r in rows:  # in journal order: later states overwrite earlier ones
                conn.execute(stmt, r)

    def holds(self, bodies: list[dict[str, Any]]) -> int:
        """Holds in journal order, each pointed at its segment by key and version (the id of a
        segment restored from object metadata may differ); returns holds whose version is gone."""
        with db_errors(), self.engine.connect() as conn:
            ids = {(k, v): i for i, k, v in conn.execute(select(SEG.c.id, SEG.c.key, SEG.c.version_id).where(
                SEG.c.key.in_({b.get("segment_key", "") for b in bodies})))}
        lost = 0
        fixed = []
        for b in bodies:
            sid = ids.get((b.get("segment_key", ""), b.get("segment_version_id", "")))
            if sid is None:
                lost += 1
            fixed.append({**b, "segment_id": sid if sid is not None else b["segment_id"]})
        self.latest(Hold.__table__, fixed)
        return lost

    # -- registry -----------------------------------------------------------------------
    def registry(self, revisions: list[dict[str, Any]]) -> set[str]:
        """Revisions (inserted as they are) replayed in order into areas, cameras and equipment;
        returns every camera id the history names (registered now or removed since)."""
        self.insert_ignore(Revision.__table__, [table_row(Revision.__table__, b) for b in revisions])
        areas: dict[str, dict] = {}
        cams: dict[str, dict | None] = {}
        equipment: dict[str, dict] = {}
        links: dict[str, list[str]] = {}
        for r in sorted(revisions, key=lambda b: b["id"]):
            after = json.loads(r["after"]) if r["after"] else None
            if r["entity"] == "area" and after:
                areas[r["entity_id"]] = after
            elif r["entity"] == "camera":
                cams[r["entity_id"]] = after  # None: removed
                if after is None:
                    for eq in links:
                        links[eq] = [c for c in links[eq] if c != r["entity_id"]]
            elif r["entity"] == "equipment" and after:
                equipment[r["entity_id"]] = after["equipment"]
                links[r["entity_id"]] = list(after.get("cameras", []))
        self.insert_ignore(Area.__table__, [table_row(Area.__table__, a) for a in areas.values()])
        cam_rows = []
        for cid, c in cams.items():
            if c is not None:  # as registered, enabled, no credentials (never journaled)
                cam_rows.append(table_row(Camera.__table__, {**c, "enabled": True, "password_enc": None,
                                                             "url_secrets_enc": None, "sub_url_secrets_enc": None}))
        self.insert_ignore(Camera.__table__, cam_rows)
        self.insert_ignore(Equipment.__table__, [table_row(Equipment.__table__, e) for e in equipment.values()])
        self.insert_ignore(EquipmentCamera.__table__, [{"equipment_id": e, "camera_id": c}
                                                       for e, cs in links.items() for c in cs if cams.get(c)])
        return set(cams)

    def fix_sequences(self) -> None:
        """PostgreSQL: each id sequence past the largest id restored (SQLite needs nothing:
        a new rowid is one past the largest)."""
        if not self.pg:
            return
        with db_errors(), self.engine.begin() as conn:
            for t in ID_TABLES:
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                                  f"COALESCE((SELECT MAX(id) FROM {t}), 1), (SELECT MAX(id) FROM {t}) IS NOT NULL)"))
