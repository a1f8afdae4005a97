"""FHIR date/time parsing: instants, partial dates and offset-less datetimes become spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.clinical.timing import When, hours_between, latest_of, parse

H14 = timedelta(hours=14)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def test_full_timestamp_is_an_exact_instant() -> None:
    when = parse("2026-03-10T10:00:00Z")
    assert when == When(utc(2026, 3, 10, 10), utc(2026, 3, 10, 10))
    assert when is not None and not when.partial


def test_offset_is_kept_and_compares_as_the_same_instant() -> None:
    when = parse("2026-03-10T12:30:00+02:00")
    assert when is not None and not when.partial
    assert when.earliest == utc(2026, 3, 10, 10, 30)
    assert when.earliest.utcoffset() == timedelta(hours=2)
    assert when.earliest.tzinfo == timezone(timedelta(hours=2))


def test_fractional_seconds_are_read() -> None:
    when = parse("2026-03-10T10:00:00.250Z")
    assert when == When.at(utc(2026, 3, 10, 10, 0, 0, 250000))


def test_datetime_without_offset_becomes_a_28_hour_span() -> None:
    when = parse("2026-03-10T10:00:00")
    assert when == When(utc(2026, 3, 9, 20), utc(2026, 3, 11, 0))
    assert when is not None and when.partial


def test_datetime_without_seconds_or_offset_is_a_span_too() -> None:
    assert parse("2026-03-10T10:00") == When(utc(2026, 3, 10, 10) - H14, utc(2026, 3, 10, 10) + H14)


def test_full_date_spans_the_day_widened_by_every_time_zone() -> None:
    when = parse("2026-03-10")
    assert when == When(utc(2026, 3, 9, 10), utc(2026, 3, 11, 13, 59, 59))
    assert when is not None and when.partial


def test_year_month_spans_the_whole_month() -> None:
    assert parse("2026-02") == When(utc(2026, 1, 31, 10), utc(2026, 3, 1, 13, 59, 59))


def test_year_month_in_a_leap_year_has_29_days() -> None:
    assert parse("2028-02") == When(utc(2028, 1, 31, 10), utc(2028, 3, 1, 13, 59, 59))


def test_december_rolls_into_the_next_year() -> None:
    assert parse("2026-12") == When(utc(2026, 11, 30, 10), utc(2027, 1, 1, 13, 59, 59))


def test_year_only_spans_the_whole_year() -> None:
    assert parse("2026") == When(utc(2025, 12, 31, 10), utc(2027, 1, 1, 13, 59, 59))


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse("  2026-03-10T10:00:00Z ") == When.at(utc(2026, 3, 10, 10))


@pytest.mark.parametrize(
    "value",
    [None, "", 20260310, 2026.0, [], {}, "yesterday", "2026-13", "2026-02-30", "2026-3-1", "10:00"],
)
def test_absent_or_unreadable_values_are_none(value: object) -> None:
    assert parse(value) is None


def test_spans_order_by_earliest_then_latest() -> None:
    a = When(utc(2026, 1, 1), utc(2026, 1, 3))
    b = When(utc(2026, 1, 1), utc(2026, 1, 2))
    c = When(utc(2026, 1, 2), utc(2026, 1, 2))
    assert sorted([a, c, b]) == [b, a, c]


def test_hours_between_is_signed() -> None:
    assert hours_between(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11, 30)) == 1.5
    assert hours_between(utc(2026, 1, 1, 11, 30), utc(2026, 1, 1, 10)) == -1.5


def test_latest_of_uses_the_latest_bound_and_ignores_none() -> None:
    exact = When.at(utc(2026, 3, 10, 20))
    day = parse("2026-03-10")  # may be as late as 11 Mar 13:59:59
    assert latest_of(None, exact, day, None) == day
    assert latest_of(exact, None) == exact
    assert latest_of(None, None) is None
    assert latest_of() is None
