from datetime import datetime, timedelta, timezone

import pytest

from labwitness.errors import ConfigError, RetentionTooShortError
from retention.policy import RetentionPolicy, add_calendar_months, ceil_to_second

UTC = timezone.utc


def t(*a):
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize(
    "start, months, expected",
    [
        (t(2026, 1, 15, 8, 0), 6, t(2026, 7, 15, 8, 0)),
        (t(2026, 8, 31, 23, 59), 6, t(2027, 2, 28, 23, 59)),  # clamp to month end
        (t(2027, 8, 31, 0, 0), 6, t(2028, 2, 29, 0, 0)),  # leap year
        (t(2026, 7, 1), 6, t(2027, 1, 1)),  # crosses the year
        (t(2026, 12, 31, 12), 12, t(2027, 12, 31, 12)),
        (t(2026, 3, 31), 0, t(2026, 3, 31)),
    ],
)
def test_add_calendar_months(start, months, expected):
    assert add_calendar_months(start, months) == expected


@pytest.mark.parametrize(
    "end, months, margin, expected",
    [
        (t(2026, 1, 15, 8, 0, 0), 6, 7, t(2026, 7, 22, 8, 0, 0)),
        (t(2026, 1, 15, 8, 0, 0, 1), 6, 7, t(2026, 7, 22, 8, 0, 1)),  # rounds up, never down
        (t(2026, 8, 31, 10), 6, 0, t(2027, 2, 28, 10)),
        (t(2026, 5, 1), 24, 30, t(2028, 5, 31)),
    ],
)
def test_retain_until_table(end, months, margin, expected):
    assert RetentionPolicy(months, margin)(end) == expected


@pytest.mark.parametrize("months", [0, 1, 5, -6])
def test_below_six_months_is_refused(months):
    with pytest.raises(RetentionTooShortError, match="6"):
        RetentionPolicy(months, 7)


def test_negative_margin_is_refused():
    with pytest.raises(ConfigError):
        RetentionPolicy(6, -1)


def test_retain_until_is_never_below_legal_minimum_over_a_year_of_ends():
    policy = RetentionPolicy(6, 0)
    end = t(2026, 1, 1)
    while end < t(2027, 1, 1):
        until = policy(end)
        assert until >= policy.minimum(end)
        # 6 calendar months are at least 181 days (Aug 31 -> Feb 28 is the shortest)
        assert until - end >= timedelta(days=181)
        end += timedelta(hours=7, minutes=13, seconds=1, microseconds=500)


def test_naive_datetime_rejected():
    with pytest.raises(ValueError):
        RetentionPolicy()(datetime(2026, 1, 1))


def test_ceil_to_second():
    assert ceil_to_second(t(2026, 1, 1, 0, 0, 0, 999)) == t(2026, 1, 1, 0, 0, 1)
    assert ceil_to_second(t(2026, 1, 1)) == t(2026, 1, 1)

