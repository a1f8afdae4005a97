"""Feedback is authenticated exactly like a hook call, with the feedback URL as ``aud``.

Production profile, a configured ES384 issuer, real signed tokens (wall clock). The hook call
that issues the card and the feedback about it each need their own token for their own URL.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service.http.app import create_app
from tests.auth.conftest import Signer
from tests.security.conftest import (
    BASE,
    ISS_ES,
    SERVICE_AUD,
    SERVICE_PATH,
    bearer,
    mint,
    write_issuers,
)

FEEDBACK_PATH = f"{SERVICE_PATH}/feedback"
FEEDBACK_AUD = f"{BASE}{FEEDBACK_PATH}"


@pytest.fixture
def app(tmp_path: Path, ec_signer: Signer) -> Flask:
    issuers = write_issuers(
        tmp_path / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}}]
    )
    return create_app(
        {
            "profile": "production",
            "public_base_url": BASE,
            "issuers_file": str(issuers),
            "data_dir": str(tmp_path / "data"),
        }
    )


def _feedback(card_uuid: str) -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": card_uuid,
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "imaging-arranged"}},
                "outcomeTimestamp": datetime.now(UTC).isoformat(),
            }
        ]
    }


def test_feedback_needs_a_token_for_the_feedback_url(
    app: Flask, ec_signer: Signer, s1_body: dict[str, Any]
) -> None:
    client = app.test_client()
    body = copy.deepcopy(s1_body)
    body["hookInstance"] = str(uuid.uuid4())
    hook = client.post(SERVICE_PATH, json=body, headers=bearer(mint(ec_signer, ISS_ES)))
    assert hook.status_code == 200
    card = hook.get_json()["cards"][0]["uuid"]

    assert client.post(FEEDBACK_PATH, json=_feedback(card)).status_code == 401
    wrong_aud = mint(ec_signer, ISS_ES, aud=SERVICE_AUD)
    refused = client.post(FEEDBACK_PATH, json=_feedback(card), headers=bearer(wrong_aud))
    assert refused.status_code == 401
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    unknown_issuer = mint(ec_signer, "https://not-trusted.example.org", aud=FEEDBACK_AUD)
    assert (
        client.post(FEEDBACK_PATH, json=_feedback(card), headers=bearer(unknown_issuer)).status_code
        == 401
    )

    token = mint(ec_signer, ISS_ES, aud=FEEDBACK_AUD)
    accepted = client.post(FEEDBACK_PATH, json=_feedback(card), headers=bearer(token))
    assert accepted.status_code == 200
    assert accepted.get_json() == {"received": 1, "stored": 1, "duplicates": 0, "unknownCards": 0}
    # The same token again is a replay, refused like on the hook endpoint.
    assert (
        client.post(FEEDBACK_PATH, json=_feedback(card), headers=bearer(token)).status_code == 401
    )
