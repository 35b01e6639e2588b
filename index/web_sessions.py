"""Web sessions and one-time sign-in codes as rows (``web_session``), shared by every API node.

What is stored is enough to recognise a session and nothing that signs anyone in:
the SHA-256 of the session id (the cookie holds the id), the API token's *row id*
(never the token), its name and role at sign-in, the CSRF token, and times.
Invariants:

1. A row is valid while ``now < expires_ms`` (the absolute lifetime from sign-in, or
   a one-time code's expiry) and, for a session, ``now - last_seen_ms <= idle_ms``.
   Every read checks both, so an expired row is never honoured even before the purge
   removes it.
2. The token behind a session is looked up by id on every request (``api.web.session``);
   revoking it (``TokenStore.revoke``) also deletes its rows here, in the same
   transaction: every node sees the session gone at once.
3. Sign-out deletes the row: the cookie is worthless on every node from then on.

``last_seen_ms`` is written at most once per ``touch_ms`` (default 30 s), so a busy
page does not turn every request into a write.

A row written on one API node is judged on another, so ``created_ms``, ``last_seen_ms``,
``expires_ms`` and the "now" they are judged by are the database's clock
(:mod:`index.dbclock`), read in the same transaction: an API node whose clock is an hour
ahead would otherwise end every session at once, one behind would honour expired ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Engine

from index.dbclock import DbNow, db_clock
from index.models import WebSession
from index.queries import db_guarded

T = WebSession.__table__


@dataclass
class SessionRow:
    id_hash: str
    kind: str
    token_id: int
    name: str
    role: str
    csrf: str
    created_ms: int
    last_seen_ms: int
    expires_ms: int
    flash: list[tuple[str, str]]


def _row(r) -> SessionRow:
    m = r._mapping
    return SessionRow(m["id_hash"], m["kind"], int(m["token_id"]), m["name"], m["role"], m["csrf"], int(m["created_ms"]),
                      int(m["last_seen_ms"]), int(m["expires_ms"]), [tuple(x) for x in json.loads(m["flash"] or "[]")])


class WebSessionStore:
    """``now_ms``: this node's clock, the database's only on SQLite; ``db_now``: the clock of every time
    in the rows, by default the server's on PostgreSQL (:func:`index.dbclock.db_clock`)."""

    def __init__(self, engine: Engine, now_ms: Callable[[], int], *, touch_ms: int = 30_000,
                 db_now: DbNow | None = None) -> None:
        self.engine = engine
        self.db_now = db_now or db_clock(engine, now_ms)
        self.touch_ms = touch_ms

    @db_guarded
    def add(self, id_hash: str, kind: str, token_id: int, name: str, role: str, csrf: str, lifetime_ms: int) -> SessionRow:
        with self.engine.begin() as c:
            now = self.db_now(c)
            values = dict(id_hash=id_hash, kind=kind, token_id=token_id, name=name[:200], role=role, csrf=csrf,
                          created_ms=now, last_seen_ms=now, expires_ms=now + lifetime_ms, flash="[]")
            c.execute(insert(T).values(**values))
        return SessionRow(**{**values, "flash": []})

    @db_guarded
    def get(self, id_hash: str, kind: str, idle_ms: int | None, *, touch: bool = True) -> SessionRow | None:
        """The live row (invariant 1), touched; an expired one is deleted and None returned."""
        with self.engine.begin() as c:
            now = self.db_now(c)
            r = c.execute(select(T).where(T.c.id_hash == id_hash, T.c.kind == kind)).first()
            if r is None:
                return None
            row = _row(r)
            if now >= row.expires_ms or (idle_ms is not None and now - row.last_seen_ms > idle_ms):
                c.execute(delete(T).where(T.c.id_hash == id_hash))
                return None
            if touch and now - row.last_seen_ms >= self.touch_ms:
                c.execute(update(T).where(T.c.id_hash == id_hash).values(last_seen_ms=now))
                row.last_seen_ms = now
        return row

    @db_guarded
    def take(self, id_hash: str, kind: str) -> SessionRow | None:
        """Delete and return a row (a one-time code is used up by whoever deletes it first)."""
        with self.engine.begin() as c:
            r = c.execute(select(T).where(T.c.id_hash == id_hash, T.c.kind == kind)).first()
            if r is None or c.execute(delete(T).where(T.c.id_hash == id_hash)).rowcount != 1:
                return None
            now = self.db_now(c)
        row = _row(r)
        return row if now < row.expires_ms else None

    @db_guarded
    def drop(self, id_hash: str) -> None:
        with self.engine.begin() as c:
            c.execute(delete(T).where(T.c.id_hash == id_hash))

    @db_guarded
    def update_identity(self, id_hash: str, name: str, role: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(T).where(T.c.id_hash == id_hash).values(name=name[:200], role=role))

    @db_guarded
    def add_flash(self, id_hash: str, level: str, message: str) -> None:
        with self.engine.begin() as c:
            cur = c.execute(select(T.c.flash).where(T.c.id_hash == id_hash)).scalar()
            if cur is None:
                return
            items = json.loads(cur or "[]")[-9:] + [[level, message[:600]]]
            c.execute(update(T).where(T.c.id_hash == id_hash).values(flash=json.dumps(items, ensure_ascii=False)))

    @db_guarded
    def take_flash(self, id_hash: str) -> list[tuple[str, str]]:
        with self.engine.begin() as c:
            cur = c.execute(select(T.c.flash).where(T.c.id_hash == id_hash)).scalar()
            if not cur or cur == "[]":
                return []
            c.execute(update(T).where(T.c.id_hash == id_hash).values(flash="[]"))
        return [tuple(x) for x in json.loads(cur)]

    @db_guarded
    def purge(self, idle_ms: int) -> int:
        """Delete every expired row (invariant 1); returns how many."""
        with self.engine.begin() as c:
            now = self.db_now(c)
            return c.execute(delete(T).where(or_(T.c.expires_ms <= now,
                                                 (T.c.kind == "session") & (T.c.last_seen_ms < now - idle_ms)))).rowcount

    @db_guarded
    def count(self, kind: str = "session") -> int:
        with self.engine.connect() as c:
            return len(c.execute(select(T.c.id_hash).where(T.c.kind == kind)).all())

    @db_guarded
    def oldest_first(self, kind: str = "session", limit: int = 1) -> list[str]:
        with self.engine.connect() as c:
            return list(c.execute(select(T.c.id_hash).where(T.c.kind == kind).order_by(T.c.last_seen_ms)
                                  .limit(limit)).scalars())


def end_sessions_of_token(conn, token_id: int) -> int:
    """Delete a token's sessions and codes inside the caller's transaction (invariant 2)."""
    return conn.execute(delete(T).where(T.c.token_id == token_id)).rowcount
