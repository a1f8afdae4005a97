"""``python -m bench.layers``: each layer's app does what its name says, and the tool runs.

The differences between adjacent layers are reported as the cost of authentication, replay
protection and request checks, so each variant must add exactly its layer.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from bench import charts, layers, tokens
from tests.support.bench_apps import post_hook


def test_each_layer_adds_its_own_work(tmp_path: Path) -> None:
    client = tokens.create_client(tmp_path / "client")
    body = charts.body(10, now=datetime.now(UTC))  # the route evaluates at the wall clock
    with layers._production_env(tmp_path, client):
        apps = {name: layers._variant(name) for name in layers.LAYERS}
    # No authentication below "jwt"; "decode" skips the request checks that "checks" makes.
    assert post_hook(apps["decode"], b'{"hook": "patient-view"}') == (200, {"cards": []})
    assert post_hook(apps["checks"], b'{"hook": "patient-view"}')[0] == 400
    assert post_hook(apps["checks"], body) == (200, {"cards": []})
    # From "jwt" on, a token is required and accepted once.
    for name in ("jwt", "ceiling", "service"):
        assert post_hook(apps[name], body)[0] == 401, name
        (token,) = tokens.mint(client, 1, f"layers-{name}")
        status, document = post_hook(apps[name], body, token)
        assert status == 200, name
        assert bool(document["cards"]) == (name == "service")
        assert post_hook(apps[name], body, token)[0] == 401, name
    # "jwt" remembers its tokens in memory; "ceiling" and "service" in the shared database.
    with sqlite3.connect(tmp_path / "data" / "epidural-cds.sqlite3") as db:
        stored = {row[0].rsplit("-", 1)[0] for row in db.execute("SELECT jti FROM used_jwt_ids")}
    assert stored == {"layers-ceiling", "layers-service"}


def test_measure_reports_every_layer_and_restores_the_environment() -> None:
    before = {k: v for k, v in os.environ.items() if k.startswith("EPIDURAL_CDS_")}
    result = layers.measure(requests=2, rounds=1)
    assert set(result["cpu_ms_per_request"]) == set(layers.LAYERS)
    assert all(v["min"] > 0 for v in result["cpu_ms_per_request"].values())
    text = layers.render(result)
    assert all(name in text for name in layers.LAYERS)
    assert {k: v for k, v in os.environ.items() if k.startswith("EPIDURAL_CDS_")} == before
