"""Fixtures for the workbench's browser tests: the real app behind a real HTTP server.

The app (``create_app``, development profile, authentication off) is served by Werkzeug's
threaded WSGI server on 127.0.0.1 in a thread of the test process, so Chromium talks to it over a
real socket exactly as it would to gunicorn; the page, its script and its API are those the
package ships.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.support.apps import dev_app


@dataclass
class LiveApp:
    """A served app: its base URL and the server (stopped by the fixture)."""

    app: Flask
    server: BaseWSGIServer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def workbench(self) -> str:
        return f"{self.base_url}/workbench/"


def serve(app: Flask) -> LiveApp:
    """Start ``app`` on a free loopback port in a daemon thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="workbench-app").start()
    return LiveApp(app, server)


@pytest.fixture(scope="module")
def live_app() -> Iterator[LiveApp]:
    """The development app with the workbench on (its default there), served for a module."""
    live = serve(dev_app(fhir_allow_http=True, fhir_allow_private_addresses=True))
    try:
        yield live
    finally:
        live.server.shutdown()
        live.server.server_close()
