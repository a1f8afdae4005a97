"""Feedback from a production card workbench reaches the store (docs/workbench.md, Cards).

With authentication on, the page's session token (``aud`` = the workbench, reused for the
session) cannot be used on the CDS Hooks feedback endpoint, which wants a fresh token for its own
URL on every call. So the page posts to ``/workbench/api/feedback/{id}``, checked like every
workbench API call and recorded by the endpoint's own code (service/cdshooks/feedback.py). These
tests drive the real production app in process with real signed tokens: the route stores real
feedback, answers as the endpoint does (200, 400 OperationOutcome, 503 when the store is down,
against a real PostgreSQL), refuses tokens for any other audience, and the CDS Hooks endpoint
still refuses a workbench token. Without authentication the page keeps using the endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.outcomes.tables import card_feedback
from tests.auth.conftest import Signer
from tests.protocol.conftest import load_bundle, load_scenario, service_state
from tests.protocol.test_workbench_api import S1
from tests.support.apps import dev_app
from tests.support.postgres import PostgresServer
from tests.support.workbench_auth import (
    BASE,
    bearer,
    production_workbench_app,
    token,
    workbench_signer,
)

SERVICE = "epidural-complications"
ROUTE = f"/workbench/api/feedback/{SERVICE}"
CDS_FEEDBACK = f"/cds-services/{SERVICE}/feedback"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return workbench_signer()


def _rows(app: Flask) -> list[dict[str, Any]]:
    engine = service_state(app).handler.outcomes.store.engine  # type: ignore[union-attr]
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(card_feedback))]


def _card(client: FlaskClient, session: dict[str, str]) -> dict[str, Any]:
    """The S1 critical card, evaluated through the workbench with the session token."""
    built = client.post("/workbench/api/request", json={"bundle": load_bundle(S1)}, headers=session)
    assert built.status_code == 200, built.get_data(as_text=True)
    evaluated = client.post(
        "/workbench/api/evaluate",
        json={"request": built.get_json()["request"], "now": load_scenario(S1)["now"]},
        headers=session,
    )
    assert evaluated.status_code == 200
    card: dict[str, Any] = evaluated.get_json()["response"]["cards"][0]
    assert card["indicator"] == "critical"
    return card


def _accepted(card: dict[str, Any]) -> dict[str, Any]:
    mri = next(s for s in card["suggestions"] if "MRI" in s["label"])
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": mri["uuid"]}],
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    return {"feedback": [item]}


def _overridden(card: dict[str, Any]) -> dict[str, Any]:
    reason = card["overrideReasons"][0]
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": reason},
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    return {"feedback": [item]}


def test_config_names_the_workbench_route_when_a_token_is_needed(
    tmp_path: Path, signer: Signer
) -> None:
    production = production_workbench_app(tmp_path, signer).test_client()
    config = production.get("/workbench/api/config").get_json()
    assert config["authRequired"] is True
    assert config["feedbackUrl"] == f"api/feedback/{SERVICE}"
    development = dev_app().test_client().get("/workbench/api/config").get_json()
    assert development["authRequired"] is False
    assert development["feedbackUrl"] == f"../cds-services/{SERVICE}/feedback"


def test_feedback_through_the_workbench_route_is_stored(tmp_path: Path, signer: Signer) -> None:
    app = production_workbench_app(tmp_path, signer)
    client = app.test_client()
    session = bearer(token(signer))
    card = _card(client, session)
    # The same session token that evaluated the card sends both reports.
    accepted = client.post(ROUTE, json=_accepted(card), headers=session)
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    assert accepted.get_json() == {"received": 1, "stored": 1, "duplicates": 0, "unknownCards": 0}
    override = _overridden(card)
    overridden = client.post(ROUTE, json=override, headers=session)
    assert overridden.status_code == 200
    again = client.post(ROUTE, json=override, headers=session)
    assert again.get_json()["duplicates"] == 1  # the endpoint's idempotency, not a copy of it
    rows = sorted(_rows(app), key=lambda r: r["outcome"])
    assert [(r["outcome"], r["card_uuid"], r["service_id"], r["known"]) for r in rows] == [
        ("accepted", card["uuid"], SERVICE, True),
        ("overridden", card["uuid"], SERVICE, True),
    ]
    assert rows[0]["accepted_count"] == 1
    assert rows[1]["reason_code"] == card["overrideReasons"][0]["code"]


def test_the_workbench_route_needs_the_workbench_token(tmp_path: Path, signer: Signer) -> None:
    app = production_workbench_app(tmp_path, signer)
    client = app.test_client()
    card = _card(client, bearer(token(signer)))
    body = _accepted(card)
    no_token = client.post(ROUTE, json=body)
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"] == "Bearer"
    assert no_token.get_json()["resourceType"] == "OperationOutcome"
    for audience in (f"{BASE}/cds-services/{SERVICE}", f"{BASE}{CDS_FEEDBACK}"):
        refused = client.post(ROUTE, json=body, headers=bearer(token(signer, aud=audience)))
        assert refused.status_code == 401, audience
    assert _rows(app) == []


def test_the_cds_hooks_endpoint_still_refuses_a_workbench_token(
    tmp_path: Path, signer: Signer
) -> None:
    app = production_workbench_app(tmp_path, signer)
    client = app.test_client()
    session = bearer(token(signer))
    card = _card(client, session)
    refused = client.post(CDS_FEEDBACK, json=_accepted(card), headers=session)
    assert refused.status_code == 401
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    assert _rows(app) == []
    # A token minted for the feedback URL itself is what that endpoint takes.
    own = bearer(token(signer, aud=f"{BASE}{CDS_FEEDBACK}"))
    assert client.post(CDS_FEEDBACK, json=_accepted(card), headers=own).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"feedback": [{"card": "x"}]}', "application/json", 400),
        (b'{"feedback": []}', "text/plain", 415),
    ],
)
def test_the_workbench_route_refuses_malformed_feedback_as_the_endpoint_does(
    tmp_path: Path, signer: Signer, body: bytes, content_type: str, status: int
) -> None:
    app = production_workbench_app(tmp_path, signer)
    session = bearer(token(signer))
    answers = [
        app.test_client().post(path, data=body, content_type=content_type, headers=headers)
        for path, headers in (
            (ROUTE, session),
            (CDS_FEEDBACK, bearer(token(signer, aud=f"{BASE}{CDS_FEEDBACK}"))),
        )
    ]
    for answer in answers:
        assert answer.status_code == status
        assert answer.mimetype == "application/fhir+json"
        assert answer.get_json()["resourceType"] == "OperationOutcome"
    assert answers[0].get_json() == answers[1].get_json()
    assert (
        app.test_client()
        .post("/workbench/api/feedback/no-such-service", json={}, headers=session)
        .status_code
        == 404
    )


@pytest.mark.integration
def test_the_workbench_route_answers_503_while_the_store_is_down(
    tmp_path: Path, signer: Signer
) -> None:
    with PostgresServer() as server:
        app = production_workbench_app(
            tmp_path, signer, database_url=server.url, database_connect_timeout=2
        )
        client = app.test_client()
        session = bearer(token(signer))
        card = _card(client, session)
        server.pause()
        try:
            down = client.post(ROUTE, json=_accepted(card), headers=session)
        finally:
            server.resume()
        assert down.status_code == 503
        assert down.headers["Retry-After"].isdigit()
        assert down.get_json()["resourceType"] == "OperationOutcome"
        retried = client.post(ROUTE, json=_accepted(card), headers=session)
        assert retried.status_code == 200
        assert retried.get_json()["stored"] == 1
        assert [r["outcome"] for r in _rows(app)] == ["accepted"]
