"""The hash-chained audit log (the regulation's traceable change record).

Procedure "append" (one writer at a time — a row lock on the chain head on
PostgreSQL, SQLite's single writer otherwise):

1. read the newest event's hash (``GENESIS`` when the log is empty);
2. ``hash = sha256(prev_hash || canonical_json(at_ms, actor, role, action, target, detail))``;
3. insert the event with ``prev_hash`` and ``hash`` in the same transaction.

``verify`` recomputes the chain: an edited field changes that event's hash, a
removed event breaks the next one's ``prev_hash``, and a truncated tail is
caught by comparing with the last hash the caller kept (e.g. in metrics).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import AuditEvent
from index.queries import _guard

GENESIS = "0" * 64


def event_hash(prev_hash: str, at_ms: int, actor: str, role: str, action: str, target: str, detail: str) -> str:
    body = json.dumps([at_ms, actor, role, action, target, detail], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int
    head: str
    broken_at: int | None = None  # id of the first event that does not verify
    reason: str = ""


class AuditLog:
    def __init__(self, engine: Engine, now_ms: Callable[[], int]) -> None:
        self.engine = engine
        self.now_ms = now_ms
        self._lock = threading.Lock()

    @_guard
    def append(self, actor: str, action: str, target: str = "", detail: dict | None = None, role: str = "") -> AuditEvent:
        detail_s = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str)
        with self._lock, Session(self.engine, expire_on_commit=False) as s:
            q = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(1)
            if self.engine.dialect.name == "postgresql":
                q = q.with_for_update()
            head = s.exec(q).first()
            prev = head.hash if head else GENESIS
            at = self.now_ms()
            ev = AuditEvent(at_ms=at, actor=actor[:200], role=role, action=action, target=target[:300], detail=detail_s,
                            prev_hash=prev, hash=event_hash(prev, at, actor[:200], role, action, target[:300], detail_s))
            s.add(ev)
            s.commit()
            return ev

    @_guard
    def events(self, limit: int = 200, before_id: int | None = None) -> list[AuditEvent]:
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
            if before_id is not None:
                q = q.where(AuditEvent.id < before_id)
            return list(s.exec(q))

    @_guard
    def verify(self, expected_head: str | None = None) -> ChainReport:
        prev, n = GENESIS, 0
        with Session(self.engine) as s:
            for ev in s.exec(select(AuditEvent).order_by(col(AuditEvent.id)).execution_options(yield_per=1000)):
                n += 1
                if ev.prev_hash != prev:
                    return ChainReport(False, n, prev, ev.id, "前一事件缺失或被改动 / previous event missing or altered")
                if event_hash(prev, ev.at_ms, ev.actor, ev.role, ev.action, ev.target, ev.detail) != ev.hash:
                    return ChainReport(False, n, prev, ev.id, "事件内容被改动 / event content altered")
                prev = ev.hash
        if expected_head is not None and prev != expected_head:
            return ChainReport(False, n, prev, None, "日志尾部被删除 / events removed from the end of the log")
        return ChainReport(True, n, prev)
