"""Moving a chart in time, so fixed example data can be served "as of now".

Example scenarios fix their own ``now``; a running service evaluates at wall-clock time. Shifting
every FHIR dateTime/instant (and full date) of a chart by the same amount, keeping each value's
offset and precision, lets the CLI and the tests replay an example against a live server; the
cards do not change, because the clinical core only compares times with each other.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

# A dateTime/instant with a time part (FHIR requires an offset then), or a full date.
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}(?::\d{2})?)(?P<frac>\.\d+)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def shift_value(text: str, delta: timedelta) -> str:
    """``text`` moved by ``delta`` when it is a FHIR dateTime with an offset or a full date."""
    match = _DATETIME.fullmatch(text)
    if match is not None:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moved = (moment + delta).astimezone(moment.tzinfo)
        frac = match.group("frac")
        spec = "seconds" if not frac else ("milliseconds" if len(frac) <= 4 else "microseconds")
        out = moved.isoformat(timespec=spec)
        return out.replace("+00:00", "Z") if match.group("tz") == "Z" else out
    if _DATE.fullmatch(text):
        # A date stands for a whole day: move its midday and keep the day that lands on.
        midday = datetime.combine(date.fromisoformat(text), time(12), tzinfo=UTC)
        return (midday + delta).date().isoformat()
    return text


def shift_times(tree: Any, delta: timedelta) -> Any:
    """A copy of a JSON tree with every dateTime/instant and full date moved by ``delta``.

    Year-only and year-month values are left alone: they cannot be told apart from codes such as
    RxNorm ``3264`` and cannot move by a fraction of a day.
    """
    if isinstance(tree, dict):
        return {key: shift_times(value, delta) for key, value in tree.items()}
    if isinstance(tree, list):
        return [shift_times(item, delta) for item in tree]
    if isinstance(tree, str):
        return shift_value(tree, delta)
    return tree
