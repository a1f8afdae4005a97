"""Where gunicorn's workers keep their Prometheus counts: ``PROMETHEUS_MULTIPROC_DIR``.

Each worker is its own process with its own counters, and a scrape reaches one process only, so
in multiprocess mode prometheus-client gives every process a small memory-mapped file in one
directory and the scrape sums them. Counts of workers that have exited (``max_requests``
recycling, a crash) stay in their files, so totals never go backwards.

prometheus-client chooses multiprocess mode when it is first imported, from the environment, so
:func:`prepare` must run before anything imports it: the gunicorn configuration
(:mod:`service.http.gunicorn_conf`) calls it at import, before the app is built. This module
therefore never imports prometheus-client itself.

The directory is emptied when the master starts, once per process: files left by an earlier run
would otherwise be added to this run's counts (and a dead pid reused by a new worker would
continue its numbers).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_prepared: dict[str, Path] = {}
_CREATED = "created"
_DIRECTORY = "directory"


def prepare() -> Path:
    """Make ``$PROMETHEUS_MULTIPROC_DIR`` exist and empty (a new temporary one when unset).

    Runs once per process; later calls return the same directory without emptying it again
    (gunicorn re-reads its configuration on ``HUP``, and the counts must survive that).
    """
    if _DIRECTORY in _prepared:
        return _prepared[_DIRECTORY]
    configured = os.environ.get(ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="epidural-cds-metrics-"))
        os.environ[ENV] = str(directory)
        _prepared[_CREATED] = directory
    _prepared[_DIRECTORY] = directory
    return directory


def cleanup() -> None:
    """Remove the directory if :func:`prepare` created it (when the master exits)."""
    created = _prepared.pop(_CREATED, None)
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
    _prepared.pop(_DIRECTORY, None)
