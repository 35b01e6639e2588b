"""The hash-chained audit log (the regulation's traceable change record).

Procedure "append" (one writer at a time — a row lock on the chain head on
PostgreSQL, SQLite's single writer otherwise):

1. read the newest event's hash (``GENESIS`` when the log is empty);
2. ``hash = sha256(prev_hash || canonical_json(at_ms, actor, role, action, target, detail))``;
3. insert the event with ``prev_hash`` and ``hash`` in the same transaction.

``verify`` recomputes the chain: an edited field changes that event's hash, a
removed event breaks the next one's ``prev_hash``, and a truncated tail is
caught by comparing with the last hash the caller kept (e.g. in metrics).

Keyed chain: sha256 alone can be recomputed by whoever can write the database, so
the whole chain could be rewritten consistently.  Each event also carries
``mac = HMAC-SHA256(key, hash)`` with the installation's audit key, a file outside
the database (``api.keyring.audit_mac_key``, injected here); ``verify`` checks it,
so a rewrite without the key file is detected.  Events written before the key
existed have no ``mac`` and are counted as unkeyed, not as failures.

Footage reads are audited once per (actor, action, target) and period
(:meth:`AuditLog.append_once`): a player fetches one segment in many Range
requests and a page refreshes a thumbnail, and each of them is a read, but one
row per person, picture and ten minutes says everything.  The row is written
before the first byte is served; an audit log that cannot write stops the read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import AuditEvent
from index.queries import db_guarded
from labwitness.url_secrets import redact_text

GENESIS = "0" * 64
READ_PERIOD_MS = 10 * 60_000  # one audit row per (actor, footage read) and ten minutes


def event_mac(key: bytes, hash_: str) -> str:
    return hmac.new(key, hash_.encode(), hashlib.sha256).hexdigest()


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
    unkeyed: int = 0  # events without a mac (written before the audit key existed)
    keyed: bool = False  # was a key given to check the macs with?


class AuditLog:
    def __init__(self, engine: Engine, now_ms: Callable[[], int], key: bytes | None = None) -> None:
        self.engine = engine
        self.now_ms = now_ms
        self.key = key  # the installation's audit key (None: events get no mac; tests and tools)
        self._lock = threading.Lock()
        self._once_lock = threading.Lock()
        self._recent: OrderedDict[tuple[str, str, str], int] = OrderedDict()  # key -> when appended, oldest first

    @db_guarded
    def append(self, actor: str, action: str, target: str = "", detail: dict | None = None, role: str = "") -> AuditEvent:
        # whoever calls: a URL in the details never keeps its password (the log is kept for years)
        detail_s = redact_text(json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str))
        with self._lock, Session(self.engine, expire_on_commit=False) as s:
            q = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(1)
            if self.engine.dialect.name == "postgresql":
                q = q.with_for_update()
            head = s.exec(q).first()
            prev = head.hash if head else GENESIS
            at = self.now_ms()
            h = event_hash(prev, at, actor[:200], role, action, target[:300], detail_s)
            ev = AuditEvent(at_ms=at, actor=actor[:200], role=role, action=action, target=target[:300], detail=detail_s,
                            prev_hash=prev, hash=h, mac=event_mac(self.key, h) if self.key else None)
            s.add(ev)
            s.commit()
            return ev

    def append_once(self, actor: str, action: str, target: str, detail: dict | None = None, role: str = "",
                    period_ms: int = READ_PERIOD_MS) -> AuditEvent | None:
        """Append unless this process appended the same (actor, action, target) less
        than ``period_ms`` ago; returns the new event, or None when it was covered.
        A failed append is not remembered, so the next read tries again (and fails
        the same way while the log is down)."""
        key = (actor, action, target)
        with self._once_lock:  # the check and the append together: two parallel reads write one row
            now = self.now_ms()
            while self._recent:  # bounded memory: forget what has aged out (ordered by time)
                oldest_key, at = next(iter(self._recent.items()))
                if 0 <= now - at < period_ms:
                    break
                del self._recent[oldest_key]
            at = self._recent.get(key)
            if at is not None and 0 <= now - at < period_ms:  # a clock set back never extends the cover
                return None
            ev = self.append(actor, action, target, detail, role)
            self._recent.pop(key, None)
            self._recent[key] = now
            return ev

    @db_guarded
    def head(self) -> tuple[int, str] | None:
        """(id, hash) of the newest event: what a seal anchors (retention.seals)."""
        with Session(self.engine) as s:
            ev = s.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(1)).first()
            return (ev.id, ev.hash) if ev else None

    @db_guarded
    def hash_at(self, event_id: int) -> str | None:
        """The stored hash of event ``event_id`` (None: no such event)."""
        with Session(self.engine) as s:
            ev = s.get(AuditEvent, event_id)
            return ev.hash if ev else None

    @db_guarded
    def events(self, limit: int = 200, before_id: int | None = None) -> list[AuditEvent]:
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
            if before_id is not None:
                q = q.where(AuditEvent.id < before_id)
            return list(s.exec(q))

    @db_guarded
    def verify(self, expected_head: str | None = None) -> ChainReport:
        prev, n, unkeyed, keyed = GENESIS, 0, 0, self.key is not None
        with Session(self.engine) as s:
            for ev in s.exec(select(AuditEvent).order_by(col(AuditEvent.id)).execution_options(yield_per=1000)):
                n += 1
                if ev.prev_hash != prev:
                    return ChainReport(False, n, prev, ev.id, "前一事件缺失或被改动 / previous event missing or altered",
                                       unkeyed, keyed)
                if event_hash(prev, ev.at_ms, ev.actor, ev.role, ev.action, ev.target, ev.detail) != ev.hash:
                    return ChainReport(False, n, prev, ev.id, "事件内容被改动 / event content altered", unkeyed, keyed)
                if ev.mac is None:
                    unkeyed += 1
                elif self.key is not None and not hmac.compare_digest(ev.mac, event_mac(self.key, ev.hash)):
                    return ChainReport(False, n, prev, ev.id, "事件签名不符：日志在数据库中被重写 / event MAC does not match "
                                       "the installation's audit key: the log was rewritten in the database", unkeyed, keyed)
                prev = ev.hash
        if expected_head is not None and prev != expected_head:
            return ChainReport(False, n, prev, None, "日志尾部被删除 / events removed from the end of the log",
                               unkeyed, keyed)
        return ChainReport(True, n, prev, unkeyed=unkeyed, keyed=keyed)
