"""Content health in the index: per-camera state, events, reference approval, usable time.

Tables (migration 0004): :class:`~index.models.CameraContentState` (one row per
camera: sampling mark, detector state, thumbnail, approved reference) and
:class:`~index.models.ContentEvent` (one row per event, keyed in practice by
camera, kind and start).  Writes are idempotent: re-folding the same samples
updates the same rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import CameraContentState, ContentEvent, Segment
from index.queries import db_errors
from labwitness.errors import NotFoundError
from retention.content import EventUpdate, unusable_by_kind, unusable_ms

#: an event never lasts longer than this without a sample; bounds the window query's lower edge
MAX_EVENT_SCAN_MS = 400 * 24 * 3600 * 1000



def _engine(ix) -> Engine:
    return getattr(ix, "engine", ix)


def load_state(engine: Engine, camera_id: str) -> CameraContentState:
    with db_errors(), Session(_engine(engine), expire_on_commit=False) as s:
        row = s.get(CameraContentState, camera_id)
        return row if row is not None else CameraContentState(camera_id=camera_id)


def save(engine: Engine, state: CameraContentState, events: Iterable[EventUpdate], *,
         checked: Iterable[int] = (), at_ms: int = 0) -> list[ContentEvent]:
    """Store the camera's state and upsert its events, and stamp the ``checked`` segments
    as taken in at ``at_ms`` (``Segment.content_checked_ms``), in one transaction: a
    segment is checked exactly once even if the job dies half-way."""
    out = []
    with db_errors(), Session(_engine(engine), expire_on_commit=False) as s:
        _stamp(s, state.camera_id, checked, at_ms)
        for ev in events:
            row = s.exec(select(ContentEvent).where(ContentEvent.camera_id == state.camera_id, ContentEvent.kind == ev.kind,
                                                    ContentEvent.start_ms == ev.start_ms)).first()
            if row is None:
                row = ContentEvent(camera_id=state.camera_id, kind=ev.kind, start_ms=ev.start_ms, end_ms=ev.end_ms,
                                   ongoing=ev.ongoing, detail=ev.detail)
            else:
                row.end_ms, row.ongoing, row.detail = max(row.end_ms, ev.end_ms), ev.ongoing, ev.detail
            s.add(row)
            out.append(row)
        s.merge(state)
        s.commit()
    return out


def _stamp(s: Session, camera_id: str, ids: Iterable[int], at_ms: int) -> None:
    ids = list(ids)
    if ids:
        seg = Segment.__table__
        s.execute(update(seg).where(seg.c.camera_id == camera_id, seg.c.id.in_(ids)).values(content_checked_ms=at_ms))


def start_checking(engine: Engine, state: CameraContentState, from_ms: int, at_ms: int) -> None:
    """A camera's first run: checking begins at ``from_ms`` (saved as its mark); the footage
    indexed so far that ends before it is out of scope and stamped taken in.  Footage that is
    indexed later, however old, is still checked (the job's late pass)."""
    state.sampled_until_ms = from_ms
    seg = Segment.__table__
    with db_errors(), Session(_engine(engine), expire_on_commit=False) as s:
        s.execute(update(seg).where(seg.c.camera_id == state.camera_id, seg.c.content_checked_ms.is_(None),
                                    seg.c.end_ms <= from_ms).values(content_checked_ms=at_ms))
        s.merge(state)
        s.commit()


def events(engine: Engine, camera_id: str | None = None, start_ms: int | None = None, end_ms: int | None = None, *,
           ongoing_only: bool = False) -> list[ContentEvent]:
    """Content events overlapping [start_ms, end_ms) (all when unbounded), oldest first."""
    with db_errors(), Session(_engine(engine), expire_on_commit=False) as s:
        q = select(ContentEvent)
        if camera_id is not None:
            q = q.where(ContentEvent.camera_id == camera_id)
        if end_ms is not None:
            q = q.where(ContentEvent.start_ms < end_ms)
        if start_ms is not None:
            q = q.where(ContentEvent.end_ms > start_ms, ContentEvent.start_ms > start_ms - MAX_EVENT_SCAN_MS)
        if ongoing_only:
            q = q.where(ContentEvent.ongoing == True)  # noqa: E712
        return list(s.exec(q.order_by(col(ContentEvent.camera_id), col(ContentEvent.start_ms))))


@dataclass(frozen=True)
class Usability:
    """One camera's window: how much of it was recorded but not usable, and why."""

    camera_id: str
    start_ms: int
    end_ms: int
    unusable_ms: int
    by_kind: dict[str, int]
    ongoing: tuple[str, ...]


def usability(rows: Iterable[ContentEvent], start_ms: int, end_ms: int) -> dict[str, Usability]:
    """Pure: per-camera unusable milliseconds of [start_ms, end_ms) from ContentEvent rows
    (overlapping events merged, any kind).  For coverage: "recorded but not usable"."""
    by_cam: dict[str, list] = {}
    for r in rows:
        by_cam.setdefault(r.camera_id, []).append(r)
    return {
        cam: Usability(cam, start_ms, end_ms, unusable_ms(evs, start_ms, end_ms), unusable_by_kind(evs, start_ms, end_ms),
                       tuple(sorted({e.kind for e in evs if e.ongoing})))
        for cam, evs in sorted(by_cam.items())
    }


def camera_usability(engine: Engine, start_ms: int, end_ms: int, camera_id: str | None = None) -> dict[str, Usability]:
    """:func:`usability` over the events the index holds for the window."""
    return usability(events(engine, camera_id, start_ms, end_ms), start_ms, end_ms)


def approve_reference(engine: Engine, camera_id: str, actor: str, now_ms: int, *, audit=None,
                      jpeg: bytes | None = None) -> CameraContentState:
    """Make the camera's latest sample (its thumbnail), or ``jpeg``, the approved reference
    frame that "moved" is judged against.  Audited when ``audit`` (an ``index.audit.AuditLog``) is given."""
    with db_errors(), Session(_engine(engine), expire_on_commit=False) as s:
        row = s.get(CameraContentState, camera_id)
        picture = jpeg if jpeg is not None else (row.thumbnail_jpeg if row is not None else None)
        if not picture:
            raise NotFoundError(f"摄像机 {camera_id} 还没有画面样本，请先运行 `labwitness retention content` / "
                                f"camera {camera_id} has no sampled picture yet: run `labwitness retention content` first")
        if row is None:
            row = CameraContentState(camera_id=camera_id)
        row.reference_jpeg = picture
        row.reference_approved_ms = now_ms
        row.reference_approved_by = actor[:200]
        s.add(row)
        s.commit()
    if audit is not None:
        audit.append(actor, "camera.reference.approve", camera_id,
                     {"sha256": hashlib.sha256(picture).hexdigest(), "bytes": len(picture),
                      "sample_ms": row.last_sample_ms})
    return row
