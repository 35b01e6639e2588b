"""Seals witnessed outside the box: the persistent outbox, the worker that empties it,
and what health says about it.

* :class:`WitnessOutbox` — ``enqueue(doc_id, body, signature, key_id)`` keeps the
  document in the index and owes it to every configured witness (idempotent per
  (document, witness)); a witness added later is owed the whole history.  Nothing is
  lost while a witness is down: a delivery leaves the outbox only when the witness
  confirmed it, and the document's bytes stay (the receipt is kept beside them).
* :class:`WitnessDeliverer` — a worker (``run()`` around ``run_once()``): per witness,
  documents in order, oldest first.  A witness not answering
  (:class:`StorageUnavailableError`) stops that witness's round and its head document
  waits an exponentially growing delay (:class:`RetryPolicy`), so order is kept and a
  dead witness is not hammered; a refusal (any other storage error, e.g. HTTP 400)
  parks that one document for the slow retry and the next ones go on.
* :func:`classify` — pure policy: backlog facts -> health problems (warning when the
  oldest undelivered document is older than a bound, critical past a second one).

Adapters: :mod:`retention.witness_adapters` (interface, S3), :mod:`retention.witness_https`,
registry of kinds: :mod:`retention.witness_config`; ``docs/witnesses.md``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Mapping, Sequence
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine

from index.joblock import job_lock
from index.witness_outbox import Backlog, WitnessRows
from labwitness.clock import Clock, utc_ms
from labwitness.errors import IndexUnavailableError, JobRefusedError, LabwitnessError, StorageUnavailableError
from retention.time_sources import date_reading
from retention.time_witness import Absent, TimeReading
from retention.witness_adapters import LOOPBACK, Witness, check_doc_id

log = logging.getLogger(__name__)
LOCK = "witness-delivery"  # index.joblock: one deliverer at a time

UNAVAILABLE, REFUSED = "unavailable", "refused"


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed delivery is tried again (pure)."""

    initial_s: float = 5.0  # after the first failure
    cap_s: float = 300.0  # the longest wait while a witness does not answer
    refused_s: float = 3600.0  # a refusal needs an admin: tried again hourly, not hammered

    def delay_s(self, failures: int, kind: str) -> float:
        """Seconds until the next try after ``failures`` failures in a row (>= 1)."""
        if kind == REFUSED:
            return self.refused_s
        return min(self.cap_s, self.initial_s * 2 ** max(0, failures - 1))


class WitnessOutbox:
    """Documents owed to the configured witnesses (``witness_delivery``)."""

    def __init__(self, engine: Engine, witnesses: Mapping[str, str], clock: Clock) -> None:
        self.engine = engine
        self.rows = WitnessRows(engine)
        self.kinds = dict(witnesses)  # name -> kind, the configured witnesses
        self.clock = clock

    @property
    def names(self) -> list[str]:
        return list(self.kinds)

    def enqueue(self, doc_id: str, body: bytes, signature: str, key_id: str) -> None:
        """Owe the document to every configured witness; durable in the index when it
        returns.  Enqueuing it again is harmless; the same id with other bytes is a
        :class:`ConflictError`; a database that does not answer raises
        :class:`IndexUnavailableError` (the caller keeps the document and tries again)."""
        check_doc_id(doc_id)
        self.rows.add(doc_id, body, signature, key_id, self.names, utc_ms(self.clock.now()))

    def owe_all(self) -> int:
        """Owe every kept document to every configured witness (at start: a new witness gets the history)."""
        now_ms = utc_ms(self.clock.now())
        return sum(self.rows.owe_all(w, now_ms) for w in self.names)

    def backlog(self) -> dict[str, Backlog]:
        return self.rows.backlog(self.names)

    def deliveries(self, doc_id: str) -> list[dict]:
        return self.rows.deliveries(doc_id)


class WitnessDeliverer:
    """Empties the outbox into the witnesses; one thread for all of them (a seal an hour)."""

    def __init__(self, outbox: WitnessOutbox, witnesses: Sequence[Witness], clock: Clock, *,
                 policy: RetryPolicy = RetryPolicy(), stop: threading.Event | None = None, interval_s: float = 5.0,
                 page: int = 50) -> None:
        self.outbox = outbox
        self.witnesses = list(witnesses)
        self.clock = clock
        self.policy = policy
        self.stop = stop or threading.Event()
        self.interval_s = interval_s
        self.page = page
        self.last_error: dict[str, str] = {}  # witness -> the last failure of this process ("" after a success)
        self._owed_all = False

    def run_once(self) -> int:
        """One round over every witness; how many deliveries were confirmed.  One deliverer at
        a time across processes and nodes (job lock ``witness-delivery``): with several nodes
        each would otherwise deliver the same document; the one that finds the lock taken
        does nothing this round (0)."""
        try:
            with job_lock(self.outbox.engine, LOCK):
                if not self._owed_all:
                    self.outbox.owe_all()
                    self._owed_all = True
                return sum(self._round(w) for w in self.witnesses)
        except JobRefusedError:
            return 0

    def _round(self, w: Witness) -> int:
        done, after = 0, 0
        while not self.stop.is_set():
            rows = self.outbox.rows.pending(w.name, self.page, after)
            if not rows:
                return done
            for row in rows:
                after = row.document_id
                now_ms = utc_ms(self.clock.now())
                if row.next_try_ms > now_ms:
                    if row.error_kind == REFUSED:
                        continue  # parked until its slow retry; the documents after it still go
                    return done  # the witness is backing off: nothing after its head, order kept
                try:
                    receipt = w.deliver(row.doc_id, row.body, row.signature, row.key_id)
                except StorageUnavailableError as e:
                    self._failed(w, row, UNAVAILABLE, e, now_ms)
                    return done
                except LabwitnessError as e:
                    self._failed(w, row, REFUSED, e, now_ms)
                    continue
                except Exception as e:  # a bug in an adapter: logged, retried like an outage, never dropped
                    log.exception("witness %s: delivery of %s failed unexpectedly", w.name, row.doc_id)
                    self._failed(w, row, UNAVAILABLE, e, now_ms)
                    return done
                self.outbox.rows.delivered(row.id, utc_ms(self.clock.now()), receipt)
                self.last_error[w.name] = ""
                done += 1
                if self.stop.is_set():
                    return done
        return done

    def _failed(self, w: Witness, row, kind: str, e: Exception, now_ms: int) -> None:
        delay = self.policy.delay_s(row.attempts + 1, kind)
        text = f"{type(e).__name__}: {e}" if not isinstance(e, LabwitnessError) else str(e)
        self.last_error[w.name] = text
        log.warning("见证投递失败 / witness %s: %s not delivered (%s, attempt %d), next try in %.0f s: %s",
                    w.name, row.doc_id, kind, row.attempts + 1, delay, text)
        self.outbox.rows.failed(row.id, kind, text, now_ms + round(delay * 1000))

    def run(self) -> None:
        """Deliver until stopped; the index not answering is waited out with backoff."""
        db_wait = self.interval_s
        while not self.stop.is_set():
            try:
                self.run_once()
                db_wait = self.interval_s
            except IndexUnavailableError as e:
                log.error("见证投递暂停，索引不可用 / witness delivery paused, index unavailable: %s", e)
                db_wait = min(self.policy.cap_s, db_wait * 2)
                if self.clock.sleep(db_wait, self.stop):
                    return
                continue
            except Exception:  # the thread must outlive any single failure
                log.exception("witness delivery round failed")
            if self.clock.sleep(self.interval_s, self.stop):
                return


def held_by(witnesses: Sequence[Witness], doc_id: str, body: bytes) -> dict[str, str]:
    """The online check ("does the witness hold this seal?"): per witness ``held`` (exactly
    these bytes), ``missing``, ``different`` or ``unreachable: <why>``."""
    out: dict[str, str] = {}
    for w in witnesses:
        try:
            held = w.fetch(doc_id)
        except LabwitnessError as e:
            out[w.name] = f"unreachable: {e}"
            continue
        out[w.name] = "missing" if held is None else "held" if held == body else "different"
    return out


# -- the witnesses' clocks, for the expiry sweep ------------------------------------------------
class WitnessDateSource:
    """A witness's clock (the ``Date`` of its answer) as one of the sweep's time witnesses
    (:class:`retention.time_witness.TimeSource`).  Independent of the host clock unless the
    witness is on this host (a loopback address: a relay here reads the same clock)."""

    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self.name = f"witness:{witness.name}"
        self.location = str(getattr(witness, "location", witness.name))
        self.independent = (urlsplit(self.location if "://" in self.location else f"//{self.location}").hostname
                            not in LOOPBACK)

    def read(self, clock: Clock) -> TimeReading | Absent:
        where = "another administrative domain" if self.independent else "on this host: same clock"
        return date_reading(self.name, self.witness.server_time, clock, independent=self.independent,
                            detail=f"{self.witness.kind} witness {self.location} ({where})", what="the witness")


# -- health ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class WitnessThresholds:
    warning_s: float = 15 * 60  # a seal an hour: one not out within 15 min is behind
    critical_s: float = 6 * 3600  # six hours of seals only on this box


@dataclass(frozen=True)
class WitnessFacts:
    name: str
    kind: str
    pending: int
    oldest_age_s: float | None  # age of the oldest undelivered document; None: nothing owed
    refused: int
    last_error: str
    last_error_kind: str
    last_delivered_ms: int | None
    delivered: int

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def facts(outbox: WitnessOutbox, now_ms: int) -> list[WitnessFacts]:
    out = []
    for name, b in outbox.backlog().items():
        age = round(max(0.0, (now_ms - b.oldest_created_ms) / 1000), 1) if b.oldest_created_ms is not None else None
        out.append(WitnessFacts(name, outbox.kinds.get(name, ""), b.pending, age, b.refused, b.last_error,
                                b.last_error_kind, b.last_delivered_ms, b.delivered))
    return out


def classify(witnesses: Sequence[WitnessFacts], th: WitnessThresholds = WitnessThresholds()) -> list[dict]:
    """Problems ``{level, code, camera, text}`` in :mod:`retention.health`'s shape."""
    problems: list[dict] = []

    def flag(level: str, code: str, text: str) -> None:
        problems.append({"level": level, "code": code, "camera": None, "text": text})

    for w in witnesses:
        err = f": {w.last_error}" if w.last_error else ""
        if w.pending and w.oldest_age_s is not None and w.oldest_age_s > th.warning_s:
            level = "critical" if w.oldest_age_s > th.critical_s else "warning"
            flag(level, "witness_behind", f"见证 {w.name} 积压 {w.pending} 份，最早 {w.oldest_age_s / 3600:.1f} 小时未送达 / "
                                          f"witness {w.name}: {w.pending} document(s) not delivered, the oldest for "
                                          f"{w.oldest_age_s / 3600:.1f} h{err}")
        elif w.pending and w.last_error_kind == UNAVAILABLE:
            flag("info", "witness_retrying", f"见证 {w.name} 暂不可达，{w.pending} 份待重试 / witness {w.name} not "
                                             f"answering, {w.pending} document(s) waiting{err}")
        if w.refused:
            flag("warning", "witness_refused", f"见证 {w.name} 拒收 {w.refused} 份，需管理员处理 / witness {w.name} "
                                               f"refused {w.refused} document(s); an admin must act{err}")
    return problems
