"""End to end: order-sign and order-select on ``epidural-cds serve`` (real gunicorn), issue 17.

order-sign sends no prefetch, so the service fetches the chart from the real sekmet FHIR server
with the EHR's token (page size 1, so every resource after the first arrives through ``next``
links); order-select sends the chart as prefetch, built from the same example with the templates
discovery advertises, and no fhirServer at all. Both must give the scenario's card, with the
chart and drafts moved so that the scenario's ``now`` is the real now.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from service import content as content_module
from service.fhir.local_search import build_prefetch, bundle_resources
from service.fhir.timeshift import shift_times
from tests.integration.conftest import SEKMET_TOKEN
from tests.integration.test_serve_end_to_end import served  # noqa: F401  (the gunicorn fixture)
from tests.support.fhir_server import SekmetServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENOXAPARIN = ROOT / "fhir_examples" / "o1-enoxaparin-2h-after-catheter-removal"
APIXABAN = ROOT / "fhir_examples" / "o2-apixaban-catheter-in-situ"
SERVICE = "epidural-anticoagulant-orders"


def _moved(example: Path) -> tuple[dict[str, Any], dict[str, Any], timedelta]:
    """The example's bundle and scenario with every time moved so ``now`` is the present."""
    scenario = json.loads((example / "scenario.json").read_text())
    delta = datetime.now(UTC) - datetime.fromisoformat(scenario["now"]) - timedelta(seconds=1)
    bundle = shift_times(json.loads((example / "bundle.json").read_text()), delta)
    return bundle, shift_times(scenario, delta), delta


def _body(hook: str, scenario: dict[str, Any]) -> dict[str, Any]:
    drafts = scenario["draftOrders"]
    context: dict[str, Any] = {
        "userId": "Practitioner/integration",
        "patientId": scenario["patientId"],
        "draftOrders": drafts,
    }
    if hook == "order-select":
        context["selections"] = [
            f"MedicationRequest/{e['resource']['id']}" for e in drafts["entry"]
        ]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}


def test_order_sign_fetches_the_chart_from_the_fhir_server(
    served: str,  # noqa: F811
    fhir_server_requiring_token: SekmetServer,
) -> None:
    bundle, scenario, delta = _moved(ENOXAPARIN)
    fhir_server_requiring_token.load(bundle)
    body = _body("order-sign", scenario)
    body["fhirServer"] = fhir_server_requiring_token.base_url
    body["fhirAuthorization"] = {
        "access_token": SEKMET_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/*.read",
        "subject": "epidural-cds",
    }
    response = requests.post(f"{served}/cds-services/{SERVICE}", json=body, timeout=20)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    # The catheter removal came from the FHIR server: 4 h after it, in UTC (+00:00).
    removal = datetime.fromisoformat("2026-11-30T08:00:00+00:00") + delta
    earliest = (removal + timedelta(hours=4)).astimezone(UTC)
    assert card["indicator"] == "warning"
    assert card["summary"] == (
        "Enoxaparin (low dose) order: first dose not before "
        f"{earliest:%Y-%m-%d %H:%M} +00:00 (4 h after the catheter removal)"
    )
    # The procedure the server returned is cited in the evidence extension (not in the text).
    assert "Procedure/o1-proc-epidural" in json.dumps(card["extension"])
    update = card["suggestions"][0]["actions"][0]
    start = update["resource"]["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"]
    assert abs(datetime.fromisoformat(start.replace("Z", "+00:00")) - earliest) < timedelta(
        minutes=1
    )


def test_order_select_uses_prefetch_without_a_fhir_server(served: str) -> None:  # noqa: F811
    bundle, scenario, _ = _moved(APIXABAN)
    body = _body("order-select", scenario)
    service = content_module.load().service(SERVICE, "order-select")
    assert service is not None
    queries = {
        spec.key: spec.query.replace("{{context.patientId}}", scenario["patientId"])
        for spec in service.prefetch
    }
    body["prefetch"] = build_prefetch(bundle_resources(bundle), queries)
    response = requests.post(f"{served}/cds-services/{SERVICE}", json=body, timeout=20)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert (card["indicator"], card["summary"]) == (
        "critical",
        "Apixaban (high dose) ordered with the epidural catheter in place: ASRA advises against it",
    )
