"""A footage window's uncovered parts as the API shows them (``GapOut``), for a
camera's footage and a report's alike, and the fast encoders of footage times.

``index.tiling`` tiles each window into clips and reasoned gaps; here a gap
(``index.tiling.Part``) becomes JSON.  Times are RFC 3339 UTC with milliseconds,
by integer arithmetic: a long report has thousands of clip times, and datetime
objects cost several times more (bench/report_query).
"""

from __future__ import annotations

import functools
import time
from datetime import datetime

from pydantic import BaseModel, Field

from index.tiling import Part
from labwitness.clock import DAY_MS


class GapOut(BaseModel):
    """A part of a footage window without stored footage, and why (``index.tiling``):
    clips and gaps together tile the window exactly."""

    start: datetime
    end: datetime
    reason: str = Field(description="pending_upload | a recorded gap's reason (timeout, refused, spool_full, ...) | "
                                    "camera_offline | not_registered | future | unknown")
    detail: str = Field(default="", description="the recorder's message (recorded gaps; the cause of camera_offline)")
    since: datetime | None = Field(default=None, description="camera_offline: when the outage still going on began")


@functools.lru_cache(maxsize=64)
def _utc_day(day: int) -> str:
    t = time.gmtime(day * 86400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"


def iso_ms(ms: int) -> str:
    """``2026-03-01T08:00:00.000Z`` for UTC milliseconds."""
    day, rest = divmod(ms, DAY_MS)
    h, rest = divmod(rest, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{_utc_day(day)}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def gap_json(p: Part) -> dict:
    """One :class:`GapOut`, JSON-ready."""
    return {"start": iso_ms(p.start_ms), "end": iso_ms(p.end_ms), "reason": p.reason, "detail": p.detail,
            "since": None if p.since_ms is None else iso_ms(p.since_ms)}
