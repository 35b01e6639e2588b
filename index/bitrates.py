"""The cameras' recorded bitrates, measured from the index's recent segments (``labwitness doctor``'s spool check)."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Camera, Segment
from index.queries import db_guarded


@db_guarded
def recent_bitrates(engine: Engine, since_ms: int) -> dict[str, float]:
    """Bytes per second of media, per enabled camera, over the segments that start after ``since_ms``."""
    with Session(engine) as s:
        rows = s.exec(
            select(Segment.camera_id, func.sum(Segment.size), func.sum(Segment.media_duration_ms))
            .join(Camera, col(Camera.id) == col(Segment.camera_id))
            .where(col(Segment.start_ms) > since_ms, col(Camera.enabled) == True)  # noqa: E712
            .group_by(col(Segment.camera_id))).all()
    return {cid: float(size) / (float(ms) / 1000) for cid, size, ms in rows if ms}  # PostgreSQL's sums: Decimal
