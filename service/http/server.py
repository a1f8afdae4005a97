"""Running the app under gunicorn, the production WSGI server, from our own command line.

``epidural-cds serve`` embeds gunicorn instead of shelling out to it so that one command starts
the service with validated settings, and so content or configuration errors stop it before it
binds a port (the app is built once in the master process and shared by the workers).

Gunicorn's settings come from a gunicorn configuration, by default the module
:mod:`service.http.gunicorn_conf` shipped in the package (``deploy/gunicorn.conf.py`` is the
same configuration as a file, for operators who run gunicorn themselves or want to edit it);
the command line's ``--host``/``--port``/``--workers``/``--threads`` override it.
"""

from __future__ import annotations

import gc
import importlib
import runpy
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config

#: The packaged gunicorn configuration, in gunicorn's ``python:`` module notation.
DEFAULT_CONFIG = "python:service.http.gunicorn_conf"


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


def load_config(location: str = DEFAULT_CONFIG) -> dict[str, Any]:
    """The gunicorn settings defined by a configuration module (``python:NAME``) or file.

    Like gunicorn's own ``-c``: every module-level name that is a gunicorn setting is one;
    everything else in the module is ignored. Importing the packaged configuration also prepares
    the metrics directory (:mod:`service.http.multiproc`), so call this before building the app.
    """
    if location.startswith("python:"):
        namespace: Mapping[str, Any] = vars(importlib.import_module(location[len("python:") :]))
    else:
        namespace = runpy.run_path(location)
    known = Config().settings
    return {name: value for name, value in namespace.items() if name in known}


def bind_address(host: str, port: int) -> str:
    """Gunicorn's ``bind`` for ``host`` and ``port`` (IPv6 addresses in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(
    app: Flask,
    host: str,
    port: int,
    workers: int | None = None,
    threads: int = 1,
    config: str = DEFAULT_CONFIG,
) -> None:
    """Serve ``app`` until interrupted (Ctrl-C or SIGTERM stop it, draining in-flight calls).

    ``workers`` ``None`` keeps the configuration's (``EPIDURAL_CDS_WORKERS`` or the CPU count).
    """
    options = load_config(config)
    options["bind"] = bind_address(host, port)
    if workers is not None:
        options["workers"] = workers
    if threads > 1:
        options.update(threads=threads, worker_class="gthread")
    # Everything built so far (modules, content, compiled schemas, the app) lives as long as the
    # process. Freezing it moves it out of the collector's generations: a full collection in a
    # worker no longer walks it (a large hook call triggers several), and the workers forked
    # from this master do not write GC bookkeeping into pages they share with it.
    gc.freeze()
    GunicornServer(app, options).run()
