"""Evidence packages and the legal holds they place: the rows of the export → hold →
release procedure (docs/exports.md).

The invariant this module keeps with its callers: **every S3 legal hold labwitness
sets has an unreleased Hold row** — the row is committed (``pending``) before the
hold is set, becomes ``placed`` after, and is marked released only after the hold
is off (or another package still relies on the version).  So a release, or the
recovery of an interrupted export, finds every hold from the rows alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import ExportPackage, Hold, Segment
from index.queries import db_guarded
from labwitness.errors import NotFoundError


@dataclass(frozen=True)
class HeldVersion:
    """An unreleased Hold row of a package and the segment version it holds."""

    hold_id: int
    segment_id: int
    key: str
    version_id: str


class ExportStore:
    def __init__(self, engine: Engine, now_ms: Callable[[], int]) -> None:
        self.engine = engine
        self.now_ms = now_ms

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

    @db_guarded
    def needing_release(self, silent_since_ms: int) -> list[ExportPackage]:
        """Packages whose holds must go: still ``running`` with a heartbeat that stopped
        before ``silent_since_ms`` (their process died mid-export), or ``failed`` with
        holds not yet released (storage refused the release when they failed)."""
        with Session(self.engine, expire_on_commit=False) as s:
            running = [p for p in s.exec(select(ExportPackage).where(ExportPackage.status == "running"))
                       if (p.updated_ms or p.created_ms) < silent_since_ms]
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
            for sid in sorted(set(segment_ids)):
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
