"""FHIR date/time values as instants with their uncertainty.

FHIR allows partial dates ("2026", "2026-03", "2026-03-10") and requires an offset only when a time
is given. Safety note 1 of the clinical spec says a red flag is never lost because a date is
partial: such a value becomes a span ``[earliest, latest]`` and the rules treat it as inside a
window whenever any part of the span is. Full timestamps are spans of zero width.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
# Stands for "no time recorded": far enough back to open every window, yet safe to subtract from.
UNKNOWN_START = datetime(1900, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class When:
    """A point in time, or the span a partial FHIR date stands for (always timezone-aware)."""

    earliest: datetime
    latest: datetime

    @classmethod
    def at(cls, instant: datetime) -> When:
        """An exact instant."""
        return cls(instant, instant)

    @classmethod
    def unknown(cls, until: datetime) -> When:
        """A time that was not recorded: any moment up to ``until`` (safety note 1)."""
        return cls(UNKNOWN_START, until)

    @property
    def recorded(self) -> bool:
        """Whether any time was recorded at all."""
        return self.earliest != UNKNOWN_START

    @property
    def partial(self) -> bool:
        """Whether the source value was incomplete (a span rather than an instant)."""
        return self.earliest != self.latest


def parse(value: object) -> When | None:
    """Parse a FHIR ``date``, ``dateTime`` or ``instant``; ``None`` when absent or unreadable.

    A dateTime without an offset is read as UTC and marked partial (±14 h) so it is never
    treated as more precise than it is.
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    # A value with a time part ("T") is never partial; only dates need the pattern.
    partial = None if "T" in text else _PARTIAL.match(text)
    if partial:
        year = int(partial.group(1))
        month = int(partial.group(2)) if partial.group(2) else None
        day = int(partial.group(3)) if partial.group(3) else None
        try:
            if month is None:
                start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
            elif day is None:
                last = calendar.monthrange(year, month)[1]
                start = datetime(year, month, 1, tzinfo=UTC)
                end = start + timedelta(days=last)
            else:
                start = datetime(year, month, day, tzinfo=UTC)
                end = start + timedelta(days=1)
        except ValueError:
            return None
        # A date without a time zone could be any local day: widen by the largest offsets.
        return When(start - timedelta(hours=14), end + timedelta(hours=14) - timedelta(seconds=1))
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
        return When(instant - timedelta(hours=14), instant + timedelta(hours=14))
    return When(instant, instant)


def hours_between(earlier: datetime, later: datetime) -> float:
    """Signed number of hours from ``earlier`` to ``later``."""
    return (later - earlier).total_seconds() / 3600.0


def latest_of(*values: When | None) -> When | None:
    """The value that may be latest (by its latest bound), ignoring ``None``."""
    present = [v for v in values if v is not None]
    return max(present, key=lambda v: v.latest) if present else None


def format_delta(hours: float) -> str:
    """A duration for clinicians: "<1 h", "1.5 h", "20 h", "3 d"."""
    hours = abs(hours)
    if hours < 1:
        return "<1 h"
    if hours < 10:
        return f"{round(hours, 1):g} h"
    if hours < 48:
        return f"{round(hours):d} h"
    return f"{round(hours / 24, 1):g} d"
