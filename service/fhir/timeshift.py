"""Moving a chart in time, so fixed example data can be served "as of now".

Example scenarios fix their own ``now``; a running service evaluates at wall-clock time. Shifting
every FHIR dateTime/instant of a chart by the same amount (keeping each value's offset) lets the
CLI and the tests replay an example against a live server; the cards do not change, because the
clinical core only compares times with each other.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def shift_value(value: str, delta: timedelta) -> str:
    """``value`` moved by ``delta`` when it is a FHIR dateTime with an offset; else unchanged."""
    if not _DATETIME.match(value):
        return value
    moved = datetime.fromisoformat(value.replace("Z", "+00:00")) + delta
    text = moved.isoformat()
    return text.replace("+00:00", "Z") if value.endswith("Z") else text


def shift_times(tree: Any, delta: timedelta) -> Any:
    """A copy of a JSON tree with every dateTime string shifted by ``delta``."""
    if isinstance(tree, dict):
        return {key: shift_times(value, delta) for key, value in tree.items()}
    if isinstance(tree, list):
        return [shift_times(item, delta) for item in tree]
    if isinstance(tree, str):
        return shift_value(tree, delta)
    return tree
