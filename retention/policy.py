"""Retention arithmetic: pure functions, no I/O, no clock.

The rule (Guangxi 2015 regulation on testing information, Art. 7): recordings
of the main testing areas are kept **no less than 6 months**.  labwitness sets
each object's S3 Object Lock retain-until to::

    retain_until = ceil_to_second(segment_end + N calendar months + margin days)

with N >= 6 (refused otherwise) and a safety margin (default 7 days) that
absorbs clock error and the time between recording and upload.

Calendar months are added the way people count them: 31 Aug + 6 months is the
last day of February.  That clamp is the only place the result can be shorter
than "same day number", and the margin covers it many times over.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

from labwitness.errors import ConfigError, RetentionTooShortError

LEGAL_MINIMUM_MONTHS = 6


def add_calendar_months(instant: datetime, months: int) -> datetime:
    """``instant`` plus whole calendar months, clamping the day to month end."""
    if months < 0:
        raise ValueError("months must be >= 0")
    month_index = instant.month - 1 + months
    year = instant.year + month_index // 12
    month = month_index % 12 + 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def ceil_to_second(instant: datetime) -> datetime:
    """S3 retain-until has second granularity; never round *down*."""
    if instant.microsecond:
        return instant.replace(microsecond=0) + timedelta(seconds=1)
    return instant


def validate(months: int, margin_days: int) -> None:
    """Refuse a configuration that would keep footage less than the law asks."""
    if months < LEGAL_MINIMUM_MONTHS:
        raise RetentionTooShortError(
            f"保留期 {months} 个月低于法规要求的 {LEGAL_MINIMUM_MONTHS} 个月，拒绝启动。"
            f" / Retention of {months} months is below the legal minimum of "
            f"{LEGAL_MINIMUM_MONTHS} months; refusing to start. "
            f"Set LABWITNESS_RETENTION_MONTHS to {LEGAL_MINIMUM_MONTHS} or more."
        )
    if margin_days < 0:
        raise ConfigError(
            f"保留余量不能为负数 / LABWITNESS_RETENTION_MARGIN_DAYS must be >= 0, got {margin_days}"
        )


@dataclass(frozen=True)
class RetentionPolicy:
    """Callable ``segment_end -> retain_until``, validated on construction."""

    months: int = LEGAL_MINIMUM_MONTHS
    margin_days: int = 7

    def __post_init__(self) -> None:
        validate(self.months, self.margin_days)

    def __call__(self, segment_end: datetime) -> datetime:
        if segment_end.tzinfo is None:
            raise ValueError("segment_end must be timezone-aware UTC")
        until = add_calendar_months(segment_end, self.months) + timedelta(days=self.margin_days)
        return ceil_to_second(until)

    def minimum(self, segment_end: datetime) -> datetime:
        """The least retain-until the law allows (no margin); used to verify."""
        return add_calendar_months(segment_end, LEGAL_MINIMUM_MONTHS)
