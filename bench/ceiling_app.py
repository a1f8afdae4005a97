"""The HTTP ceiling: the real service with its clinical evaluation taken out.

The HTTP target compares the service with a bare Flask app that only decodes the body. Between
the two lie costs that any CDS Hooks service must pay before it may look at a chart: the
spec-mandated JWT check (an ES384 signature), the replay guard's insert, the request schema,
the service's error and CORS layers and its log line. This app is the real service (the same
``create_app`` in the same profile, environment and gunicorn settings as ``epidural-cds serve``)
whose hook handler decodes and validates the request and then answers ``{"cards": []}``
without resolving the prefetch or evaluating anything. Its throughput, divided by the
baseline's in the same run, is the highest ratio the service could reach if its clinical
evaluation cost nothing: the ceiling the HTTP target is measured against.

    EPIDURAL_CDS_PROFILE=production ... python -m bench.ceiling_app --port 8098 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from typing import Any

from flask import Flask

from service.cdshooks.handler import HookHandler, HookOutcome, collector_paused


class ParseOnlyHandler(HookHandler):
    """A hook handler that checks the request as the service does, then evaluates nothing."""

    def handle(
        self,
        service_id: str,
        body: bytes,
        *,
        now: datetime | None = None,
        received_at: float | None = None,
        extra_allowed: tuple[str, ...] = (),
        base_url: str = "",
    ) -> HookOutcome:
        """Decode and schema-check ``body`` for ``service_id``, then answer no cards."""
        with collector_paused():
            request = self.read_request(service_id, body)
        return HookOutcome(
            response={"cards": []},
            hook_instance=str(request.get("hookInstance", "unchecked")),
            indicators=(),
            origins={},
        )

    def read_request(self, service_id: str, body: bytes) -> dict[str, Any]:
        """The request as the service reads it: decoded and checked (a subclass may do less)."""
        return self.parse_request(self.service(service_id), body)


def create_ceiling_app() -> Flask:
    """The service's app, configured from the environment, with :class:`ParseOnlyHandler`."""
    # Imported here, not at the top: `main` loads the gunicorn configuration first, which
    # prepares the metrics directory before prometheus-client is imported (as `serve` does).
    from service.http.app import EXTENSION_KEY, ServiceState, create_app

    app = create_app()
    current: ServiceState = app.extensions[EXTENSION_KEY]
    handler = ParseOnlyHandler(current.content, current.settings)
    app.extensions[EXTENSION_KEY] = dataclasses.replace(current, handler=handler)
    return app


def main() -> None:
    from service.config import Settings
    from service.http.logjson import configure_root
    from service.http.server import DEFAULT_CONFIG, load_config, serve

    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gunicorn-config", default=DEFAULT_CONFIG)
    args = parser.parse_args()
    configure_root(Settings.from_env().log_level)  # JSON lines, as `epidural-cds serve`
    load_config(args.gunicorn_config)
    app = create_ceiling_app()
    serve(app, args.host, args.port, args.workers, args.threads, args.gunicorn_config)


if __name__ == "__main__":
    main()
