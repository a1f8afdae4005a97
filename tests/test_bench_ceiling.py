"""The HTTP benchmark's ceiling server (``bench.ceiling_app``) is the service minus evaluation.

Its ratio to the bare baseline is reported as the most the service could reach if evaluating a
chart cost nothing, so it must keep every other cost of the real service (authentication,
replay protection, request checks) and drop only the clinical work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import charts, tokens
from bench.ceiling_app import create_ceiling_app
from service.http.app import create_app
from tests.support.bench_apps import post_hook


@pytest.fixture(params=tokens.ALGORITHMS)
def client_and_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tokens.Client:
    """The benchmark's client (ES384, then RS384) and a production environment trusting it."""
    client = tokens.create_client(tmp_path / "client", request.param)
    monkeypatch.setenv("EPIDURAL_CDS_PROFILE", "production")
    monkeypatch.setenv("EPIDURAL_CDS_ISSUERS_FILE", str(client.issuers_file))
    monkeypatch.setenv("EPIDURAL_CDS_PUBLIC_BASE_URL", tokens.PUBLIC_BASE_URL)
    monkeypatch.setenv("EPIDURAL_CDS_DATA_DIR", str(tmp_path / "data"))
    return client


def test_ceiling_answers_no_cards_where_the_service_answers_a_critical_one(
    client_and_env: tokens.Client,
) -> None:
    # The route evaluates at the wall clock: an ANCHOR chart would no longer be current.
    body = charts.body(charts.BENCH_SIZE, now=datetime.now(UTC))
    first, second = tokens.mint(client_and_env, 2, "ceiling-test")
    status, document = post_hook(create_app(), body, first)
    assert status == 200
    assert [c["indicator"] for c in document["cards"]] == ["critical"]
    status, document = post_hook(create_ceiling_app(), body, second)
    assert (status, document) == (200, {"cards": []})


def test_ceiling_still_authenticates_and_refuses_replays(client_and_env: tokens.Client) -> None:
    app = create_ceiling_app()
    body = charts.body(10)
    assert post_hook(app, body, None)[0] == 401
    (token,) = tokens.mint(client_and_env, 1, "ceiling-replay")
    assert post_hook(app, body, token)[0] == 200
    status, document = post_hook(app, body, token)
    assert status == 401
    assert document["resourceType"] == "OperationOutcome"


def test_ceiling_still_checks_the_request(client_and_env: tokens.Client) -> None:
    app = create_ceiling_app()
    bad_json, not_a_hook = tokens.mint(client_and_env, 2, "ceiling-bad")
    assert post_hook(app, b'{"hook": ', bad_json)[0] == 400
    status, document = post_hook(app, b'{"hook": "patient-view"}', not_a_hook)
    assert status == 400
    assert document["resourceType"] == "OperationOutcome"
