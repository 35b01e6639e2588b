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
from urllib.parse import quote

from pydantic import BaseModel, Field

from index.tiling import Part


class GapOut(BaseModel):
    """A part of a footage window without stored footage, and why (``index.tiling``):
    clips and gaps together tile the window exactly."""

    start: datetime
    end: datetime
    reason: str = Field(description="pending_upload | a recorded gap's reason (timeout, refused, spool_full, ...) | "
                                    "camera_offline | not_registered | future | unknown")
    detail: str = Field(default="", description="the recorder's message (recorded gaps; the cause of camera_offline)")
    since: datetime | None = Field(default=None, description="camera_offline: when the outage still going on began")


@functools.lru_cache(maxsize=8192)
def _utc_minute(minute: int) -> str:
    """``2026-03-01T08:00:`` for a UTC minute since the epoch (a report's clips share a few
    thousand minutes: formatting the minute once made a 128-window body 2.5x cheaper here)."""
    t = time.gmtime(minute * 60)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"


_SECONDS = tuple(f"{s:02d}" for s in range(60))


def iso_ms(ms: int) -> str:
    """``2026-03-01T08:00:00.000Z`` for UTC milliseconds."""
    minute, rest = divmod(ms, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{_utc_minute(minute)}{_SECONDS[s]}.{milli:03d}Z"


def url_time(ms: int) -> str:
    """``datetime.isoformat()`` of UTC milliseconds as a URL query value (``+`` escaped):
    ``2026-03-01T08:00:00%2B00:00``, or ``...:00.250000%2B00:00`` with a fraction."""
    minute, rest = divmod(ms, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{_utc_minute(minute)}{_SECONDS[s]}{f'.{milli:03d}000' if milli else ''}%2B00:00"


def gap_json(p: Part) -> dict:
    """One :class:`GapOut`, JSON-ready."""
    return {"start": iso_ms(p.start_ms), "end": iso_ms(p.end_ms), "reason": p.reason, "detail": p.detail,
            "since": None if p.since_ms is None else iso_ms(p.since_ms)}


def clips_next_url(report_no: str, w, after: tuple[int, int] | None, limit: int) -> str:
    """The page after ``after`` (start_ms, segment id) of report window ``w``'s clips
    (``after`` None: its first page; add ``&at=<epoch ms>`` for the page playing then)."""
    url = (f"/api/v1/reports/{quote(report_no, safe='')}/footage/clips?camera_id={quote(w.camera_id, safe='')}"
           f"&window_start={w.start_ms}&limit={limit}")
    return url if after is None else f"{url}&after={after[0]}-{after[1]}"


def window_clips_next(report_no: str, w, limit: int) -> str | None:
    """``clips_next`` of a paged report window (``index.records.WindowFootage``): the page
    after the clips it lists, None when they are all of them."""
    if not w.paged:
        return None
    return clips_next_url(report_no, w, (w.clips[-1][1], w.clips[-1][0]) if w.clips else None, limit)
