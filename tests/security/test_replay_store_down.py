"""Authenticated calls while the store cannot be reached: an answer, never a 500.

The app runs in the production profile with an ES384 issuer (real signed tokens, wall clock) and
its SQLite store in a directory of its own. The outage is real: the directory is moved away
before the first call (the app holds no open connection then: it closes them after migrating),
so every connection attempt fails in SQLite itself; moving it back ends the outage.

``memory`` (the default): the hook call answers with its cards, the same token is refused as a
replay by the same process, feedback answers 503 without using its token up, and once the store
is back the token accepted during the outage is in ``used_jwt_ids``. ``refuse``: the hook call
answers 503 with an OperationOutcome and ``Retry-After``.
"""

from __future__ import annotations

import copy
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from service.config import Settings
from service.errors import ConfigError
from service.http.app import create_app
from service.replay_fallback import RETRY_S
from tests.auth.conftest import Signer
from tests.security.conftest import BASE, ISS_ES, SERVICE_PATH, bearer, mint, write_issuers

FEEDBACK_PATH = f"{SERVICE_PATH}/feedback"
FEEDBACK_AUD = f"{BASE}{FEEDBACK_PATH}"


class Outage:
    """The app's store directory, which can be moved away and back."""

    def __init__(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "store"
        self.away = tmp_path / "store-away"
        self.directory.mkdir()
        self.url = f"sqlite:///{self.directory}/cds.sqlite3"

    def begin(self) -> None:
        self.directory.rename(self.away)

    def end(self) -> None:
        self.away.rename(self.directory)

    def recorded_jtis(self) -> set[str]:
        with sqlite3.connect(self.directory / "cds.sqlite3") as connection:
            return {row[0] for row in connection.execute("SELECT jti FROM used_jwt_ids")}


def _app(tmp_path: Path, signer: Signer, outage: Outage, **settings: Any) -> Flask:
    issuers = write_issuers(
        tmp_path / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [signer.public_jwk()]}}]
    )
    return create_app(
        {
            "profile": "production",
            "public_base_url": BASE,
            "issuers_file": str(issuers),
            "data_dir": str(tmp_path / "data"),
            "database_url": outage.url,
            **settings,
        }
    )


def _hook(client: FlaskClient, body: dict[str, Any], token: str) -> Any:
    fresh = copy.deepcopy(body)
    fresh["hookInstance"] = str(uuid.uuid4())
    return client.post(SERVICE_PATH, json=fresh, headers=bearer(token))


def _feedback(client: FlaskClient, card: str, token: str) -> Any:
    item = {
        "card": card,
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "imaging-arranged"}},
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    return client.post(FEEDBACK_PATH, json={"feedback": [item]}, headers=bearer(token))


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def _events(name: str) -> float:
    found = REGISTRY.get_sample_value(
        "epidural_cds_replay_guard_store_events_total", {"event": name}
    )
    return found or 0.0


def test_hooks_answer_and_replays_are_refused_while_the_store_is_down(
    tmp_path: Path, ec_signer: Signer, s1_body: dict[str, Any]
) -> None:
    outage = Outage(tmp_path)
    client = _app(tmp_path, ec_signer, outage).test_client()
    downs, in_memory = _events("down"), _events("accepted_in_memory")
    outage.begin()

    token = mint(ec_signer, ISS_ES)
    answered = _hook(client, s1_body, token)
    assert answered.status_code == 200, answered.get_data(as_text=True)
    cards = answered.get_json()["cards"]
    assert [card["indicator"] for card in cards] == ["critical"]
    replayed = _hook(client, s1_body, token)
    assert replayed.status_code == 401
    assert replayed.headers["WWW-Authenticate"] == "Bearer"

    feedback_token = mint(ec_signer, ISS_ES, aud=FEEDBACK_AUD)
    refused = _feedback(client, cards[0]["uuid"], feedback_token)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"].isdigit()
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    assert _events("down") == downs + 1
    assert _events("accepted_in_memory") == in_memory + 2

    outage.end()
    time.sleep(RETRY_S)  # a store found down is tried again after this interval
    # The same feedback token again: the failed write did not use it up.
    stored = _feedback(client, cards[0]["uuid"], feedback_token)
    assert stored.status_code == 200, stored.get_data(as_text=True)
    assert _jti(token) in outage.recorded_jtis()
    assert _hook(client, s1_body, token).status_code == 401


def test_refuse_mode_answers_503_with_retry_after(
    tmp_path: Path, ec_signer: Signer, s1_body: dict[str, Any]
) -> None:
    outage = Outage(tmp_path)
    app = _app(tmp_path, ec_signer, outage, replay_guard_when_store_down="refuse")
    client = app.test_client()
    outage.begin()

    token = mint(ec_signer, ISS_ES)
    refused = _hook(client, s1_body, token)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"].isdigit()
    body = refused.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"

    outage.end()
    time.sleep(RETRY_S)
    retried = _hook(client, s1_body, token)
    assert retried.status_code == 200, retried.get_data(as_text=True)


def test_the_setting_names_its_two_modes() -> None:
    assert (
        Settings.from_mapping(
            {"replay_guard_when_store_down": " Refuse "}
        ).replay_guard_when_store_down
        == "refuse"
    )
    assert Settings().replay_guard_when_store_down == "memory"
    with pytest.raises(ConfigError, match="EPIDURAL_CDS_REPLAY_GUARD_WHEN_STORE_DOWN"):
        Settings.from_mapping({"replay_guard_when_store_down": "allow"})
