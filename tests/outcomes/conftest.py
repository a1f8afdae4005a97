"""Helpers for the feedback, suppression and report tests.

Hook calls go through the app's own handler at the scenario's ``now`` (so windows are exact),
feedback through the Flask test client, as an EHR would send it. Bundles can be extended with
extra resources (an MRI order, a new finding) to show what changes the evidence fingerprint.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

from service.http.app import create_app
from tests.protocol.conftest import (
    EXAMPLES,
    encode,
    load_bundle,
    make_request,
    scenario_now,
    service_id,
    service_state,
)

S1 = EXAMPLES / "s1-labour-epidural-lmwh-weakness"
S2B = EXAMPLES / "s2b-tfesi-numbness-next-day"
SERVICE = "epidural-complications"
FEEDBACK_URL = f"/cds-services/{SERVICE}/feedback"


def outcome_app(tmp_path: Path, **settings: Any) -> Flask:
    """A development app (auth off) with its store in ``tmp_path`` (or ``database_url``)."""
    return create_app(
        {"profile": "development", "auth_disabled": True, "data_dir": str(tmp_path), **settings}
    )


def with_resources(example: Path, extra: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The example's bundle plus ``extra`` resources (as PUT entries)."""
    bundle = copy.deepcopy(load_bundle(example))
    for resource in extra:
        bundle["entry"].append(
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
        )
    return bundle


def hook(
    app: Flask,
    example: Path,
    *,
    extra: Iterable[dict[str, Any]] = (),
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The cards of one hook call for ``example`` (plus ``extra``) at the scenario's now."""
    body = make_request(app, example, bundle=with_resources(example, extra))
    outcome = service_state(app).handler.handle(
        service_id(app), encode(body), now=now or scenario_now(example)
    )
    cards: list[dict[str, Any]] = json.loads(json.dumps(outcome.response))["cards"]
    return cards


def stamp(when: datetime) -> str:
    """An outcomeTimestamp."""
    return when.astimezone().isoformat()


def send_feedback(app: Flask, *items: dict[str, Any]) -> TestResponse:
    """POST ``{"feedback": items}`` to the feedback URL."""
    return app.test_client().post(FEEDBACK_URL, json={"feedback": list(items)})


def overridden(card: dict[str, Any], code: str | None, at: datetime) -> dict[str, Any]:
    """An override report as the sandbox sends it: the reason with a code only."""
    item: dict[str, Any] = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": stamp(at),
    }
    if code is not None:
        item["overrideReason"] = {"reason": {"code": code}}
    return item


def accepted(card: dict[str, Any], suggestion: dict[str, Any], at: datetime) -> dict[str, Any]:
    """An acceptance report for one suggestion."""
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion["uuid"]}],
        "outcomeTimestamp": stamp(at),
    }


def labels(card: dict[str, Any]) -> list[str]:
    """The orders the card's suggested plans offer, each once, in order (holds left out).

    Each suggestion is one whole plan (its orders' labels joined by " + ", issue 13).
    """
    parts = [
        part
        for s in card.get("suggestions", ())
        for part in s["label"].split(" + ")
        if not part.startswith("Hold ")
    ]
    return list(dict.fromkeys(parts))


def mri_order(patient: str, authored: datetime, status: str = "active") -> dict[str, Any]:
    """A lumbar spine MRI ServiceRequest (LOINC 30679-5) authored at ``authored``."""
    return {
        "resourceType": "ServiceRequest",
        "id": f"mri-{uuid.uuid4().hex[:8]}",
        "status": status,
        "intent": "order",
        "priority": "stat",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "30679-5"}],
            "text": "<b>MRI</b> free text that must not be copied",
        },
        "subject": {"reference": f"Patient/{patient}"},
        "authoredOn": authored.isoformat(),
    }


def later(example: Path, hours: float) -> datetime:
    """The scenario's now plus ``hours``."""
    return scenario_now(example) + timedelta(hours=hours)
