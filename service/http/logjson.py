"""One JSON object per log line, for the application's, gunicorn's and the audit logs alike.

Why JSON: log forging. Text formats print caller-supplied values (a request path, a header, a
``hookInstance``) as they come, so a URL-encoded newline (``%0A``) in a path starts a new,
convincing line in the log. :class:`JsonFormatter` encodes every record as one JSON object with
``json.dumps(ensure_ascii=True)``: every control character, every line or paragraph separator
(``\\r``, ``\\n``, ``\\x85``, ``\\u2028``...) and every other non-ASCII character becomes an
escape, so whatever a value contains, a record is exactly one line, and log collectors parse
the fields instead of guessing.

What a record holds: ``time`` (UTC, milliseconds, ISO 8601), ``level``, ``logger``, ``pid``,
``message`` (the formatted message), ``hookInstance`` when the record was written during a hook
call (:mod:`service.correlation`), and any structured fields passed as
``extra={"fields": {...}}``. Exceptions are logged as their type and traceback frames, never
their message, which may quote patient data (the same rule the 500 handler follows).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from service import correlation

FIELDS = "fields"
_RESERVED = frozenset({"time", "level", "logger", "pid", "message", "hookInstance"})


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _exception(exc_info: Any) -> dict[str, str]:
    kind, _value, tb = exc_info
    name = getattr(kind, "__qualname__", str(kind))
    return {"type": name, "frames": "".join(traceback.format_tb(tb))}


class JsonFormatter(logging.Formatter):
    """Formats a :class:`logging.LogRecord` as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object, with every character outside printable ASCII escaped."""
        document: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process or os.getpid(),
        }
        try:
            document["message"] = record.getMessage()
        except (TypeError, ValueError):  # a bad %-format must not lose the record
            document["message"] = str(record.msg)
        hook_instance = getattr(record, "hookInstance", None) or correlation.hook_instance()
        if hook_instance is not None:
            document["hookInstance"] = hook_instance
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, Mapping):
            for name, value in extra.items():
                key = str(name)
                document[f"field.{key}" if key in _RESERVED else key] = value
        if record.exc_info and record.exc_info[0] is not None:
            document["exception"] = _exception(record.exc_info)
        if record.stack_info:
            document["stack"] = record.stack_info
        return json.dumps(document, ensure_ascii=True, default=str, separators=(",", ":"))


def json_handler(stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (standard error by default) that writes :class:`JsonFormatter` lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_root(level: str, stream: TextIO | None = None) -> None:
    """Send every application log record, as JSON, to standard error (replacing any handler).

    Also stops the logging module from looking up each record's source file and line (the
    "Optimization" section of the logging HOWTO): the JSON lines do not print them, and the
    lookup walks the stack on every record of every call.
    """
    logging._srcfile = None
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler(stream))
    root.setLevel(level)
