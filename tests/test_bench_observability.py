"""``bench.observability`` times the app with and without metrics and audit, side by side."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bench import observability


def test_a_tiny_run_times_every_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # restored afterwards
    root = logging.getLogger()
    handlers, level, srcfile = list(root.handlers), root.level, logging._srcfile
    try:
        result = observability.measure(requests=2, rounds=1, store=True)
    finally:  # the benchmark sets up logging as the service does; undo it for later tests
        root.handlers[:] = handlers
        root.setLevel(level)
        logging._srcfile = srcfile
    assert set(result["cpu_ms_median"]) == {"without", "service", "service+store"}
    assert set(result["ratio_to_without"]) == {"service", "service+store"}
    assert all(ms > 0 for ms in result["cpu_ms_median"].values())
    assert "without" in observability.render(result)


def test_the_bare_variant_has_no_observation_hooks() -> None:
    from tests.support.apps import dev_app

    app = observability._without_observation(dev_app())
    hooks = [
        f
        for table in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
        for functions in table.values()
        for f in functions
    ]
    assert not any(f.__module__ == "service.http.observe" for f in hooks)
    assert any(f.__module__ == "service.http.observe" for f in dev_app().after_request_funcs[None])
