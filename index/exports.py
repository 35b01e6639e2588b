"""Evidence packages and the legal holds they place: the rows of the export → hold →
release procedure (docs/exports.md).

The invariant this module keeps with its callers: **every S3 legal hold labwitness
sets has an unreleased Hold row** — the row is committed (``pending``) before the
hold is set, becomes ``placed`` after, and is marked released only after the hold
is off (or another package still relies on the version).  So a release, or the
recovery of an interrupted export, finds every hold from the rows alone.

**The queue** (docs/jobs.md): a package row is also the export job.  ``queued`` when
requested on any API node; a jobs node's worker *claims* it (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so two workers never take the same row; a compare-and-set
on the attempt number everywhere, which is what makes it safe on SQLite too),
beats ``heartbeat_at_ms`` while it builds, and finishes it.  A ``running`` row whose
heartbeat is older than the stale bound is claimed again (its worker died).  Every
write of a worker is *fenced* by ``(claimed_by, attempts)``: a worker that was given
up for dead and comes back can no longer change the row.

``heartbeat_at_ms`` is written by one jobs node and judged stale by another, so it is
the database's time (:mod:`index.dbclock`) and so is the "now" it is judged against:
a worker whose clock runs ahead must not take a live export over.  ``updated_ms`` and
``created_ms`` stay the writer's own time (shown, and ``created_ms`` dates the package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import and_, func, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.dbclock import DbNow, db_clock
from index.journal import journal_rows
from index.models import ExportPackage, Hold, Segment
from index.queries import db_guarded
from labwitness.errors import NotFoundError

PKG = ExportPackage.__table__
#: what a worker writes when it finishes (the rest of the row is the requester's)
RESULT_FIELDS = ("status", "progress", "error", "manifest", "signature", "package_key", "package_version_id",
                 "package_sha256", "warnings")


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one export: its writes must carry both."""

    package_id: str
    worker: str
    attempt: int


@dataclass(frozen=True)
class QueueBacklog:
    """Exports not finished yet: how many wait, how many are being built, and when the oldest
    of them was requested (None: none)."""

    queued: int = 0
    running: int = 0
    oldest_created_ms: int | None = None


@dataclass(frozen=True)
class HeldVersion:
    """An unreleased Hold row of a package and the segment version it holds."""

    hold_id: int
    segment_id: int
    key: str
    version_id: str


def _journal(conn, package_id: str) -> None:
    """The package row as it now is, into the journal's outbox in the same transaction (these
    Core updates bypass the ORM capture of ``index.journal``; heartbeats alone are not journaled,
    as there)."""
    row = conn.execute(select(PKG).where(PKG.c.id == package_id)).mappings().first()
    journal_rows(conn, "export_package", [dict(row)])


class ExportStore:
    """``now_ms``: this node's clock (request and update times); ``db_now``: the clock of the workers'
    heartbeats, by default the database server's (:func:`index.dbclock.db_clock`)."""

    def __init__(self, engine: Engine, now_ms: Callable[[], int], *, db_now: DbNow | None = None) -> None:
        self.engine = engine
        self.now_ms = now_ms
        self.db_now = db_now or db_clock(engine, now_ms)

    # -- packages -----------------------------------------------------------------
    @db_guarded
    def save(self, pkg: ExportPackage) -> None:
        """Write the package row; ``updated_ms`` is its heartbeat while it runs."""
        pkg.updated_ms = self.now_ms()
        with Session(self.engine, expire_on_commit=False) as s:
            s.merge(pkg)
            s.commit()

    @db_guarded
    def get(self, package_id: str) -> ExportPackage:
        with Session(self.engine, expire_on_commit=False) as s:
            pkg = s.get(ExportPackage, package_id)
        if pkg is None:
            raise NotFoundError(f"证据包不存在 / evidence package {package_id!r} not found")
        return pkg

    @db_guarded
    def for_report(self, report_no: str, limit: int = 20) -> list[ExportPackage]:
        """The report's latest packages, newest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(ExportPackage).where(ExportPackage.report_no == report_no)
                               .order_by(col(ExportPackage.created_ms).desc()).limit(limit)))

    # -- the queue ------------------------------------------------------------------
    @db_guarded
    def backlog(self) -> QueueBacklog:
        """The queue as health shows it (one statement on the indexed ``status``)."""
        with self.engine.connect() as c:
            rows = c.execute(select(PKG.c.status, func.count(), func.min(PKG.c.created_ms))
                             .where(PKG.c.status.in_(("queued", "running"))).group_by(PKG.c.status)).all()
        n = {status: int(k) for status, k, _ in rows}
        oldest = min((int(t) for _, _, t in rows if t is not None), default=None)
        return QueueBacklog(n.get("queued", 0), n.get("running", 0), oldest)

    @staticmethod
    def _claimable(stale_before_ms: int, max_attempts: int):
        return or_(PKG.c.status == "queued",
                   and_(PKG.c.status == "running", PKG.c.heartbeat_at_ms.is_not(None),
                        PKG.c.heartbeat_at_ms < stale_before_ms, PKG.c.attempts < max_attempts))

    @db_guarded
    def claim(self, worker: str, stale_ms: int, max_attempts: int, package_id: str | None = None) -> Claim | None:
        """Take the oldest queued export (or one whose worker's heartbeat is more than ``stale_ms``
        old by the database's clock), or ``package_id`` only; None when there is none free."""
        with self.engine.begin() as c:
            db_now = self.db_now(c)
            claimable = self._claimable(db_now - stale_ms, max_attempts)
            q = select(PKG.c.id, PKG.c.attempts).where(claimable)
            if package_id is not None:
                q = q.where(PKG.c.id == package_id)
            # PostgreSQL: a row another worker is claiming is skipped, not waited for
            row = c.execute(q.order_by(PKG.c.created_ms, PKG.c.id).limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            # compare-and-set on the attempt number: SQLite has no row locks, and it fences the previous claim
            n = c.execute(update(PKG).where(PKG.c.id == row.id, PKG.c.attempts == row.attempts, claimable).values(
                status="running", claimed_by=worker[:200], heartbeat_at_ms=db_now, updated_ms=self.now_ms(),
                attempts=row.attempts + 1)).rowcount
            if n == 1:
                _journal(c, row.id)
        return Claim(row.id, worker[:200], row.attempts + 1) if n == 1 else None

    def _fenced(self, claim: Claim):
        return and_(PKG.c.id == claim.package_id, PKG.c.claimed_by == claim.worker, PKG.c.attempts == claim.attempt,
                    PKG.c.status == "running")

    @db_guarded
    def beat(self, claim: Claim, progress: float | None = None) -> bool:
        """The worker's heartbeat (and progress, which every API node reads); False when the
        claim was lost (given up for dead and claimed by another worker)."""
        values: dict = {"updated_ms": self.now_ms()}
        if progress is not None:
            values["progress"] = progress
        with self.engine.begin() as c:
            values["heartbeat_at_ms"] = self.db_now(c)
            return c.execute(update(PKG).where(self._fenced(claim)).values(**values)).rowcount == 1

    @db_guarded
    def finish(self, claim: Claim, pkg: ExportPackage) -> bool:
        """Write the result fields of ``pkg`` (done or failed) if the claim still holds."""
        values = {f: getattr(pkg, f) for f in RESULT_FIELDS}
        with self.engine.begin() as c:
            if c.execute(update(PKG).where(self._fenced(claim)).values(
                    heartbeat_at_ms=self.db_now(c), updated_ms=self.now_ms(), **values)).rowcount != 1:
                return False
            _journal(c, claim.package_id)  # the result is evidence: journaled like an ORM change
            return True

    @db_guarded
    def release_claim(self, claim: Claim) -> bool:
        """Put a claimed export back in the queue (a worker stopping gracefully mid-build)."""
        with self.engine.begin() as c:
            if c.execute(update(PKG).where(self._fenced(claim)).values(status="queued", claimed_by="")).rowcount != 1:
                return False
            _journal(c, claim.package_id)
            return True

    @db_guarded
    def needing_release(self, silent_ms: int, max_attempts: int = 1 << 30) -> list[ExportPackage]:
        """Packages whose holds must go: still ``running``, silent for more than ``silent_ms``,
        that no worker will claim again (never claimed through the queue, or out of attempts),
        or ``failed`` with holds not yet released (storage refused the release when they
        failed).  Silent by the heartbeat on the database's clock; a row from before the queue
        has none, and its ``updated_ms`` is judged by this node's clock, as it was written."""
        with Session(self.engine, expire_on_commit=False) as s:
            db_silent_since = self.db_now(s.connection()) - silent_ms
            node_silent_since = self.now_ms() - silent_ms
            running = [p for p in s.exec(select(ExportPackage).where(ExportPackage.status == "running"))
                       if (p.heartbeat_at_ms < db_silent_since if p.heartbeat_at_ms is not None
                           else (p.updated_ms or p.created_ms) < node_silent_since)
                       and (p.heartbeat_at_ms is None or p.attempts >= max_attempts)]
            failed_held = select(Hold.package_id).where(col(Hold.released_ms).is_(None)).distinct()
            failed = list(s.exec(select(ExportPackage).where(ExportPackage.status == "failed",
                                                             col(ExportPackage.id).in_(failed_held))))
            return running + failed

    # -- holds --------------------------------------------------------------------
    @db_guarded
    def add_pending_holds(self, package_id: str, segment_ids: list[int]) -> None:
        """Step 1 of placing holds: one row per version, ``pending``, in one transaction,
        before any S3 hold is set."""
        now = self.now_ms()
        with Session(self.engine) as s:
            # a package built again after its worker died keeps the rows it wrote then
            have = set(s.exec(select(Hold.segment_id).where(Hold.package_id == package_id,
                                                            col(Hold.released_ms).is_(None))))
            for sid in sorted(set(segment_ids) - have):
                s.add(Hold(segment_id=sid, package_id=package_id, placed_ms=now, state="pending"))
            s.commit()

    @db_guarded
    def confirm_holds(self, package_id: str) -> None:
        """Step 3: every S3 hold of the package is set."""
        with Session(self.engine) as s:
            for h in s.exec(select(Hold).where(Hold.package_id == package_id, Hold.state == "pending",
                                               col(Hold.released_ms).is_(None))):
                h.state = "placed"
                s.add(h)
            s.commit()

    @db_guarded
    def unreleased_holds(self, package_id: str) -> list[HeldVersion]:
        """The package's holds not yet released, pending or placed, with the versions they hold."""
        with Session(self.engine) as s:
            rows = s.exec(select(Hold.id, Hold.segment_id, Segment.key, Segment.version_id)
                          .join(Segment, col(Segment.id) == col(Hold.segment_id))
                          .where(Hold.package_id == package_id, col(Hold.released_ms).is_(None))
                          .order_by(col(Hold.id)))
            return [HeldVersion(*r) for r in rows]

    @db_guarded
    def others_rely(self, segment_id: int, package_id: str) -> bool:
        """Does another package hold this segment (a pending row counts: its S3 hold may be set)?"""
        with Session(self.engine) as s:
            return s.exec(select(Hold.id).where(Hold.segment_id == segment_id, Hold.package_id != package_id,
                                                col(Hold.released_ms).is_(None)).limit(1)).first() is not None

    @db_guarded
    def mark_released(self, hold_id: int, actor: str) -> None:
        with Session(self.engine) as s:
            h = s.get(Hold, hold_id)
            h.released_ms, h.released_by = self.now_ms(), actor[:200]
            s.add(h)
            s.commit()
