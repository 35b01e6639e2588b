"""The retention jobs' decisions as pure, table-driven functions (no storage, no clock)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from labwitness.clock import utc_ms
from labwitness.errors import ConfigError
from retention.scheduler import next_run_time
from retention.policy import (
    below_legal_minimum,
    clock_skew,
    effective_now,
    index_refusal,
    lock_problem,
    may_delete,
    share_exceeded,
)

UTC = timezone.utc
NOW = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)
N = utc_ms(NOW)
DAY = 86400_000
OLD_END = utc_ms(datetime(2026, 11, 1, tzinfo=UTC))  # 7.5 months before NOW
YOUNG_END = utc_ms(datetime(2027, 1, 1, tzinfo=UTC))  # 5.5 months before NOW


@pytest.mark.parametrize(
    "end, row_until, held, stored_until, legal_hold, enforced, ok, reason",
    [
        (OLD_END, N - DAY, False, N - DAY, False, True, True, "expired"),
        (OLD_END, N, False, N, False, True, True, "expired"),  # exactly at retain-until
        (OLD_END, N - DAY, True, N - DAY, False, True, False, "hold"),
        (OLD_END, N - DAY, False, N - DAY, True, True, False, "legal_hold"),
        (OLD_END, N + 1, False, N - DAY, False, True, False, "index_retain_until_future"),
        (OLD_END, N - DAY, False, N + 1, False, True, False, "storage_retain_until_future"),
        (OLD_END, None, False, N - DAY, False, True, False, "index_no_retain_until"),
        (OLD_END, N - DAY, False, None, False, True, False, "storage_no_retain_until"),
        (OLD_END, N - DAY, False, None, False, False, True, "expired"),  # a store that does not enforce: index only
        (YOUNG_END, N - DAY, False, N - DAY, False, True, False, "below_legal_minimum"),  # a too-short lock
    ],
)
def test_may_delete(end, row_until, held, stored_until, legal_hold, enforced, ok, reason):
    v = may_delete(now_ms=N, end_ms=end, retain_until_ms=row_until, held=held, stored_retain_until_ms=stored_until,
                   legal_hold=legal_hold, store_enforced=enforced)
    assert (v.ok, v.reason) == (ok, reason)


@pytest.mark.parametrize(
    "end, now, below",
    [
        (datetime(2026, 8, 31, 10, tzinfo=UTC), datetime(2027, 2, 28, 9, 59, tzinfo=UTC), True),
        (datetime(2026, 8, 31, 10, tzinfo=UTC), datetime(2027, 2, 28, 10, tzinfo=UTC), False),  # month-end clamp
        (datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 14, 23, 59, tzinfo=UTC), True),
        (datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC), False),
    ],
)
def test_legal_minimum_floor(end, now, below):
    assert below_legal_minimum(utc_ms(end), utc_ms(now)) is below


@pytest.mark.parametrize(
    "delete_ms, total_ms, limit, exceeded",
    [
        (0, 0, 0.1, False),
        (0, 1000, 0.1, False),
        (100, 1000, 0.1, False),  # exactly at the limit is allowed
        (101, 1000, 0.1, True),
        (5, 0, 0.1, True),  # deleting from a camera with no indexed footage: stop
        (1000, 1000, 1.0, False),  # an admin's explicit 100 %
        (86400, 190 * 86400, 0.1, False),  # steady state: one day of ~190
        (30 * 86400, 190 * 86400, 0.1, True),  # a month behind: needs confirmation
    ],
)
def test_share_limit(delete_ms, total_ms, limit, exceeded):
    assert share_exceeded(delete_ms, total_ms, limit) is exceeded


@pytest.mark.parametrize("limit", [0, -0.1, 1.5])
def test_share_limit_must_be_a_fraction(limit):
    with pytest.raises(ConfigError):
        share_exceeded(1, 10, limit)


@pytest.mark.parametrize(
    "count, oldest, months, reason",
    [
        (0, None, 6, "index_empty"),
        (5, utc_ms(NOW - timedelta(days=1)), 6, "index_fresh"),
        (5, utc_ms(datetime(2026, 12, 16, tzinfo=UTC)), 6, "index_fresh"),
        (5, utc_ms(datetime(2026, 12, 15, 12, tzinfo=UTC)), 6, None),  # exactly one period
        (5, utc_ms(datetime(2026, 1, 1, tzinfo=UTC)), 12, None),
        (5, utc_ms(datetime(2026, 9, 1, tzinfo=UTC)), 12, "index_fresh"),  # a longer configured retention
    ],
)
def test_index_refusal(count, oldest, months, reason):
    assert index_refusal(count, oldest, N, months) == reason


def test_clock_rules():
    server = NOW
    assert clock_skew(NOW + timedelta(days=1), server) == 86400
    assert clock_skew(NOW - timedelta(seconds=3), server) == 3
    assert effective_now(NOW + timedelta(days=1), server) == server  # a clock ahead never wins
    assert effective_now(NOW - timedelta(seconds=5), server) == NOW - timedelta(seconds=5)


LEGAL = utc_ms(datetime(2027, 5, 1, tzinfo=UTC))  # end 2026-11-01 + 6 months


@pytest.mark.parametrize(
    "mode, until, row_until, kind",
    [
        ("COMPLIANCE", LEGAL + 7 * DAY, LEGAL + 7 * DAY, None),
        ("COMPLIANCE", LEGAL + 8 * DAY, LEGAL + 7 * DAY, None),  # extended: fine
        ("COMPLIANCE", LEGAL, None, None),
        ("COMPLIANCE", LEGAL + 6 * DAY, LEGAL + 7 * DAY, "lock_mismatch"),  # shorter than the index says
        ("COMPLIANCE", LEGAL - 1000, LEGAL - 1000, "lock_mismatch"),  # shorter than the law
        ("GOVERNANCE", LEGAL + 7 * DAY, LEGAL + 7 * DAY, "lock_mismatch"),  # removable by privileged users
        (None, None, LEGAL, "lock_missing"),
    ],
)
def test_lock_problem(mode, until, row_until, kind):
    got = lock_problem(mode=mode, retain_until_ms=until, row_retain_until_ms=row_until, end_ms=OLD_END)
    assert (got[0] if got else None) == kind


def test_next_run_after_restart():
    now = NOW
    assert next_run_time(None, 24, now, 300) == now + timedelta(seconds=300)
    last = utc_ms(now - timedelta(hours=2))
    assert next_run_time(last, 24, now, 300) == now + timedelta(hours=22)  # a restart does not skip the day
    assert next_run_time(utc_ms(now - timedelta(days=3)), 24, now, 300) == now + timedelta(seconds=300)  # overdue
