"""Times on cards: ``render.format_time`` formats field by field, as ``strftime`` would.

The card wording tests pin a few times exactly; this property test holds the hand-written
formatting to the ``strftime`` formatting it replaced, for every offset FHIR can carry (whole
minutes, -14:00 to +14:00), every time with its offset (UTC as +00:00), and converted to the
facility's zone when one is given, so that one response never mixes zones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.clinical.timing import UNKNOWN_START, When
from service.render import format_time

_OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_INSTANTS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=_OFFSETS
)


def _with_strftime(when: When, unknown: str) -> str:
    if when.partial:
        if not when.recorded:
            return unknown
        return f"{when.earliest:%Y-%m-%d} to {when.latest:%Y-%m-%d}"
    stamp = when.earliest
    offset = stamp.strftime("%z")
    zone = "+00:00" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return f"{stamp:%Y-%m-%d %H:%M} {zone}"


@settings(max_examples=400, deadline=None)
@given(_INSTANTS)
def test_an_instant_reads_as_strftime_wrote_it(instant: datetime) -> None:
    assert format_time(When.at(instant), "?") == _with_strftime(When.at(instant), "?")


@settings(max_examples=200, deadline=None)
@given(_INSTANTS, st.integers(min_value=1, max_value=400 * 24 * 60))
def test_a_span_reads_as_its_dates(start: datetime, minutes: int) -> None:
    when = When(start, start + timedelta(minutes=minutes))
    assert format_time(when, "?") == _with_strftime(when, "?")


def test_examples() -> None:
    utc = When.at(datetime(2026, 3, 9, 8, 5, tzinfo=UTC))
    assert format_time(utc, "?") == "2026-03-09 08:05 +00:00"
    east = When.at(datetime(2026, 3, 9, 8, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))))
    assert format_time(east, "?") == "2026-03-09 08:05 +05:30"
    west = When.at(datetime(2026, 3, 9, 8, 5, tzinfo=timezone(timedelta(hours=-3, minutes=-30))))
    assert format_time(west, "?") == "2026-03-09 08:05 -03:30"
    assert format_time(None, "time not recorded") == "time not recorded"
    later = datetime(2026, 3, 9, tzinfo=UTC)
    assert format_time(When.unknown(later), "time not recorded") == "time not recorded"
    assert later > UNKNOWN_START


def test_times_are_shown_in_the_facility_zone_with_its_offset() -> None:
    chicago = ZoneInfo("America/Chicago")
    winter = When.at(datetime(2026, 3, 2, 18, 0, tzinfo=UTC))
    summer = When.at(datetime(2026, 7, 2, 18, 0, tzinfo=timezone(timedelta(hours=2))))
    assert format_time(winter, "?", chicago) == "2026-03-02 12:00 -06:00"
    assert format_time(summer, "?", chicago) == "2026-07-02 11:00 -05:00"
    assert format_time(summer, "?", UTC) == "2026-07-02 16:00 +00:00"


@settings(max_examples=200, deadline=None)
@given(_INSTANTS)
def test_a_zone_changes_the_reading_not_the_instant(instant: datetime) -> None:
    shown = format_time(When.at(instant), "?", UTC)
    assert shown == _with_strftime(When.at(instant.astimezone(UTC)), "?")
