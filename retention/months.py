"""Calendar months in the lab's time zone, as the index's UTC milliseconds.

A report month is written ``"YYYY-MM"``; its bounds are local midnights (so a
month in Asia/Shanghai starts at 16:00 UTC the day before).  Pure: no clock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from labwitness.clock import from_ms, utc_ms
from labwitness.errors import ValidationError

_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")


def parse_month(month: str) -> tuple[int, int]:
    """``"2026-11"`` -> (2026, 11); ValidationError with a bilingual message otherwise."""
    m = _MONTH.fullmatch(month or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or not 1970 <= int(m.group(1)) <= 9998:
        raise ValidationError(f"月份格式应为 YYYY-MM / month must look like 2026-11, got {month!r}")
    return int(m.group(1)), int(m.group(2))


def month_bounds(month: str, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of the calendar month in ``tz``, as UTC milliseconds."""
    year, mon = parse_month(month)
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=tz)
    return utc_ms(start), utc_ms(end)


def previous_month(now_ms: int, tz: ZoneInfo) -> str:
    """The last complete calendar month in ``tz`` (the usual one to report on)."""
    first = from_ms(now_ms).astimezone(tz).replace(day=1)
    last = first - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"
