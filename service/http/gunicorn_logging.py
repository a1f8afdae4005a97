"""Gunicorn's own logs (error log and access log) in the service's JSON format.

Gunicorn formats its access log from a ``%``-template, which prints the decoded request path
(``%(U)s``) and any header as they came: a path with ``%0A`` in it wrote a second, made-up
access line. :class:`JsonGunicornLogger` (gunicorn's ``logger_class``) keeps gunicorn's handler
set-up (stdout/stderr or files, reopening on ``USR1``) and only swaps every formatter for
:class:`service.http.logjson.JsonFormatter`, and writes each access record as structured fields
instead of a template: client address (after any trusted ``X-Forwarded-For``), method, path
(no query string: it may hold patient data), status, bytes sent, duration and the call's
``hookInstance``, which the app leaves in the WSGI environ for it (the access line is written
after the app's context is gone).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from service.http.logjson import FIELDS, JsonFormatter

#: WSGI environ key under which the app leaves the call's ``hookInstance`` for the access log.
HOOK_INSTANCE_ENVIRON = "epidural_cds.hook_instance"


class JsonGunicornLogger(Logger):  # type: ignore[misc]
    """Gunicorn's logger with JSON lines; see the module docstring."""

    def setup(self, cfg: Any) -> None:
        """Gunicorn's handlers, each with the JSON formatter."""
        super().setup(cfg)
        formatter = JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        """One structured access record per request."""
        if not self.cfg.accesslog:
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        fields: dict[str, Any] = {
            "event": "access",
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD"),
            "path": _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")),
            "status": _int(status),
            "bytes": getattr(resp, "sent", None),
            "durationMs": round(request_time.total_seconds() * 1000, 1),
        }
        record: dict[str, Any] = {FIELDS: fields}
        hook_instance = environ.get(HOOK_INSTANCE_ENVIRON)
        if hook_instance is not None:
            record["hookInstance"] = hook_instance
        self.access_log.log(logging.INFO, "access", extra=record)


def _text(wsgi: str) -> str:
    """A WSGI path (UTF-8 bytes carried as Latin-1 text) as the text the client meant."""
    try:
        return wsgi.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return wsgi


def _int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)
