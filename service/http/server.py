"""Running the app under gunicorn, the production WSGI server, from our own command line.

``epidural-cds serve`` embeds gunicorn instead of shelling out to it so that one command starts
the service with validated settings, and so content or configuration errors stop it before it
binds a port (the app is built once in the master process and shared by the workers).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application serving one prebuilt Flask app."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply our options to gunicorn's configuration (unknown keys are a programming error)."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Any]:
        """The WSGI application."""
        return self.application


def serve(
    app: Flask, host: str, port: int, workers: int, threads: int = 1, timeout: int = 30
) -> None:
    """Serve ``app`` until interrupted (Ctrl-C or SIGTERM stop it cleanly)."""
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": timeout,
        "graceful_timeout": 10,
        "preload_app": True,
        "accesslog": "-",
        # Path and status only: query strings and headers may carry tokens or patient data.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
        "errorlog": "-",
        "proc_name": "epidural-cds",
    }
    # Everything built so far (modules, content, compiled schemas, the app) lives as long as the
    # process. Freezing it moves it out of the collector's generations: a full collection in a
    # worker no longer walks it (a large hook call triggers several), and the workers forked
    # from this master do not write GC bookkeeping into pages they share with it.
    gc.freeze()
    GunicornServer(app, options).run()
