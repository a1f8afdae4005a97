"""Fixtures for the workbench's browser tests: the real app behind a real HTTP server.

The app (``create_app``, development profile, authentication off) is served by Werkzeug's
threaded WSGI server on 127.0.0.1 in a thread of the test process, so Chromium talks to it over a
real socket exactly as it would to gunicorn; the page, its script and its API are those the
package ships. ``live_production`` serves the production profile instead (authentication on, the
workbench enabled by its setting), with the key that signs its users' workbench tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.auth.conftest import Signer
from tests.support.apps import dev_app
from tests.support.workbench_auth import production_workbench_app, workbench_signer


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


@dataclass
class LiveProduction:
    """A served production app and the key its trusted issuer signs workbench tokens with."""

    live: LiveApp
    signer: Signer


@pytest.fixture
def live_production(tmp_path: Path) -> Iterator[LiveProduction]:
    """The production app with the workbench on (and so authentication), served for one test."""
    signer = workbench_signer()
    live = serve(production_workbench_app(tmp_path, signer))
    try:
        yield LiveProduction(live, signer)
    finally:
        live.server.shutdown()
        live.server.server_close()
