"""Measured recording rates per camera, for capacity planning (``labwitness plan --from-running``).

Read-only: bytes over recorded wall time of each camera's recent stored segments (the
real bitrate as stored: video, audio and the fMP4 container together), and how many gap
rows began in the same window.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from index.models import Gap, Segment
from index.queries import db_guarded


@dataclass(frozen=True)
class CameraRate:
    camera_id: str
    segments: int
    bytes: int
    recorded_ms: int
    gaps: int

    @property
    def bitrate_bps(self) -> float | None:
        """Stored bits per recorded second; None without footage in the window."""
        return self.bytes * 8000 / self.recorded_ms if self.recorded_ms > 0 else None


@db_guarded
def camera_rates(engine: Engine, since_ms: int, until_ms: int) -> dict[str, CameraRate]:
    """Per camera with a segment or gap starting in [since_ms, until_ms)."""
    with Session(engine) as s:
        segs = s.exec(select(Segment.camera_id, func.count(), func.coalesce(func.sum(Segment.size), 0),
                             func.coalesce(func.sum(Segment.end_ms - Segment.start_ms), 0))
                      .where(Segment.start_ms >= since_ms, Segment.start_ms < until_ms, Segment.status == "stored")
                      .group_by(Segment.camera_id)).all()
        gaps = dict(s.exec(select(Gap.camera_id, func.count())
                           .where(Gap.start_ms >= since_ms, Gap.start_ms < until_ms).group_by(Gap.camera_id)).all())
    out = {cid: CameraRate(cid, int(n), int(b), int(ms), int(gaps.get(cid, 0))) for cid, n, b, ms in segs}
    for cid, g in gaps.items():
        out.setdefault(cid, CameraRate(cid, 0, 0, 0, int(g)))
    return out
