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

from labwitness.clock import from_ms
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


# -- expiry sweep rules (pure; see docs/retention.md) ---------------------------

#: Default share of one camera's indexed footage a single sweep may delete.
#: Steady state deletes about one day of ~190 (0.5 %); 10 % lets a sweep that
#: was down for two to three weeks catch up, and stops one that would empty a camera.
DEFAULT_MAX_SHARE = 0.10
#: Default bound on |our clock - the store's clock| before a sweep refuses.
DEFAULT_MAX_CLOCK_SKEW_S = 120.0


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "expired" when ok, else why the version must stay


def below_legal_minimum(end_ms: int, now_ms: int) -> bool:
    """True while footage ending at ``end_ms`` is younger than the law's 6 months
    (independent of any retain-until: a too-short lock never makes footage deletable)."""
    return add_calendar_months(from_ms(end_ms), LEGAL_MINIMUM_MONTHS) > from_ms(now_ms)


def partition_may_drop(*, month_end_ms: int, now_ms: int, retention_months: int, rows_left: int) -> bool:
    """Whether the expiry sweep may drop a month's ``segment`` partition (index.partitions):
    only when no row is left in it (the sweep removes a row only after storage confirmed its
    version deleted) and the whole month is older than the retention period and the legal
    minimum, both in calendar months after the month's end.  Never the current or a future month."""
    months = max(retention_months, LEGAL_MINIMUM_MONTHS)
    return rows_left == 0 and add_calendar_months(from_ms(month_end_ms), months) <= from_ms(now_ms)


def index_says_expired(*, now_ms: int, end_ms: int, retain_until_ms: int | None, held: bool) -> Verdict:
    """The index half of the rule: used to plan a sweep before asking storage."""
    if held:
        return Verdict(False, "hold")
    if retain_until_ms is None:
        return Verdict(False, "index_no_retain_until")
    if retain_until_ms > now_ms:
        return Verdict(False, "index_retain_until_future")
    if below_legal_minimum(end_ms, now_ms):
        return Verdict(False, "below_legal_minimum")
    return Verdict(True, "expired")


def may_delete(*, now_ms: int, end_ms: int, retain_until_ms: int | None, held: bool,
               stored_retain_until_ms: int | None, legal_hold: bool, store_enforced: bool = True,
               lock_unreadable: bool = False) -> Verdict:
    """Whether one indexed version may be deleted at ``now_ms``: only if the index
    *and* the retention read back from storage are both past, neither the index
    (Hold) nor storage (legal hold) holds it, and it is older than the legal minimum.
    A lock storage would not tell (``lock_unreadable``) is a lock."""
    v = index_says_expired(now_ms=now_ms, end_ms=end_ms, retain_until_ms=retain_until_ms, held=held)
    if not v.ok:
        return v
    if lock_unreadable:
        return Verdict(False, "storage_lock_unreadable")
    if legal_hold:
        return Verdict(False, "legal_hold")
    if stored_retain_until_ms is None:
        if store_enforced:
            return Verdict(False, "storage_no_retain_until")
    elif stored_retain_until_ms > now_ms:
        return Verdict(False, "storage_retain_until_future")
    return Verdict(True, "expired")


def share_exceeded(delete_ms: int, total_ms: int, max_share: float) -> bool:
    """Would deleting ``delete_ms`` of a camera's ``total_ms`` indexed footage be more than ``max_share``?"""
    if not 0 < max_share <= 1:
        raise ConfigError(f"删除比例上限须在 (0, 1] 内 / max share must be in (0, 1], got {max_share}")
    if delete_ms <= 0:
        return False
    if total_ms <= 0:
        return True
    return delete_ms / total_ms > max_share


def clock_skew(local: datetime, server: datetime) -> float:
    """Seconds between our clock and the store's (absolute)."""
    return abs((local - server).total_seconds())


def effective_now(local: datetime, server: datetime) -> datetime:
    """The earlier of the two clocks: a clock that runs ahead can only make us delete early."""
    return min(local, server)


def index_refusal(segment_count: int, oldest_start_ms: int | None, now_ms: int, months: int) -> str | None:
    """Why a sweep must not run on this index, or None.

    ``index_empty``: no segment rows at all (wrong or lost database: rebuild it first).
    ``index_fresh``: its oldest segment is younger than one retention period, so in a
    correct index nothing can have expired yet; a sweep that finds something to
    delete there is looking at wrong retain-untils or a wrong clock."""
    if segment_count <= 0 or oldest_start_ms is None:
        return "index_empty"
    if add_calendar_months(from_ms(oldest_start_ms), months) > from_ms(now_ms):
        return "index_fresh"
    return None


def lock_problem(*, mode: str | None, retain_until_ms: int | None, row_retain_until_ms: int | None,
                 end_ms: int) -> tuple[str, str] | None:
    """What is wrong with a stored version's lock, as (finding kind, detail), or None.

    The lock must be COMPLIANCE, reach at least as far as the index says, and at
    least 6 calendar months past the footage's end (the law, without margin)."""
    if mode is None or retain_until_ms is None:
        return ("lock_missing", f"no retention on the version (mode={mode})")
    if mode != "COMPLIANCE":
        return ("lock_mismatch", f"mode {mode}, expected COMPLIANCE")
    if row_retain_until_ms is not None and retain_until_ms < row_retain_until_ms:
        return ("lock_mismatch", f"retain-until {from_ms(retain_until_ms).isoformat()} is earlier than the index's "
                                 f"{from_ms(row_retain_until_ms).isoformat()}")
    legal = add_calendar_months(from_ms(end_ms), LEGAL_MINIMUM_MONTHS)
    if from_ms(retain_until_ms) < legal:
        return ("lock_mismatch", f"retain-until {from_ms(retain_until_ms).isoformat()} is earlier than end + "
                                 f"{LEGAL_MINIMUM_MONTHS} months ({legal.isoformat()})")
    return None
