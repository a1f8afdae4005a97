"""order-select and order-sign over HTTP (issue 17): request shapes, refusals, selections, cards.

Why: real clients send draftOrders loosely (no Bundle.type, or one resource alone), the sandbox
sends a bare context with prefetch, and what cannot be read must be a 400 naming the path, never a
silent "no cards". On order-select only the selected drafts are judged. The cards must offer
exactly one of "start at the earliest safe time" (the whole resource, updated) or "delete the
draft", and never change orders through systemActions. Times are moved to the present, since the
HTTP route reads the wall clock.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.cdshooks import schemas
from service.config import Settings
from service.errors import ConfigError
from service.fhir.timeshift import shift_times
from service.render_orders import escape_markdown, reference_markdown
from tests.protocol.conftest import (
    EXAMPLES,
    JSON,
    assert_operation_outcome,
    delta_to_present,
    encode,
    example_service_id,
    load_bundle,
    load_scenario,
    make_hook_request,
    scenario_now,
    service_state,
    service_url,
)
from tests.support.apps import dev_app

ORDERS = "/cds-services/epidural-anticoagulant-orders"
ENOXAPARIN_AFTER_REMOVAL = EXAMPLES / "o1-enoxaparin-2h-after-catheter-removal"
APIXABAN_IN_SITU = EXAMPLES / "o2-apixaban-catheter-in-situ"


def shifted_request(app: Flask, example: Path, hook: str = "order-sign") -> dict[str, Any]:
    """The example's order request, every time moved so the scenario's ``now`` is the present."""
    delta = delta_to_present(example)
    body = make_hook_request(app, example, bundle=shift_times(load_bundle(example), delta))
    body["hook"] = hook
    body["context"]["draftOrders"] = shift_times(body["context"]["draftOrders"], delta)
    if hook == "order-select":
        body["context"]["selections"] = [
            f"MedicationRequest/{e['resource']['id']}"
            for e in body["context"]["draftOrders"]["entry"]
        ]
    return body


def drafts_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in body["context"]["draftOrders"]["entry"]]


def post(client: FlaskClient, body: Any, url: str = ORDERS) -> TestResponse:
    return client.post(url, data=encode(body), content_type=JSON)


def cards_of(response: TestResponse) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    document = response.get_json()
    assert schemas.errors(schemas.HOOK_RESPONSE, document) == []
    assert "systemActions" not in document, "orders are never changed by systemActions"
    cards: list[dict[str, Any]] = document["cards"]
    return cards


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_both_hooks_answer_the_sandbox_request_shape(
    app: Flask, client: FlaskClient, hook: str
) -> None:
    # The sandbox's order requests: draftOrders without Bundle.type, encounterId, prefetch.
    body = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL, hook)
    del body["context"]["draftOrders"]["type"]
    body["context"]["encounterId"] = "enc-1"
    (card,) = cards_of(post(client, body))
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Enoxaparin (low dose) order: first dose not before ")
    assert "4 h after the catheter removal" in card["summary"]


def test_a_single_resource_instead_of_a_bundle_is_judged(app: Flask, client: FlaskClient) -> None:
    body = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL)
    body["context"]["draftOrders"] = drafts_of(body)[0]
    (card,) = cards_of(post(client, body))
    assert card["indicator"] == "warning"


def test_card_offers_one_of_reschedule_or_delete(app: Flask, client: FlaskClient) -> None:
    body = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL)
    (draft,) = drafts_of(body)
    (card,) = cards_of(post(client, body))
    assert card["selectionBehavior"] == "at-most-one"
    update, delete = card["suggestions"]
    (change,) = update["actions"]
    assert change["type"] == "update"
    resource = change["resource"]
    # The whole resource, as the spec requires, with only the start moved.
    start = resource["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"]
    moved = copy.deepcopy(resource)
    moved["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] = draft[
        "dosageInstruction"
    ][0]["timing"]["repeat"]["boundsPeriod"]["start"]
    assert moved == draft
    old = datetime.fromisoformat(
        draft["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"]
    )
    new = datetime.fromisoformat(start.replace("Z", "+00:00"))
    assert round((new - old).total_seconds() / 3600, 2) == 2.0  # removal + 4 h, drafted at +2 h
    assert new.astimezone(UTC).strftime("%Y-%m-%d %H:%M +00:00") in card["summary"]
    (remove,) = delete["actions"]
    assert remove == {
        "type": "delete",
        "description": remove["description"],
        "resourceId": f"MedicationRequest/{draft['id']}",
    }
    assert "ASRA guidelines, 4th ed" in card["detail"] and "5th ed" in card["detail"]
    assert "UTC" in card["detail"]


def test_catheter_in_situ_no_catheter_drug_is_critical_with_delete_only(
    app: Flask, client: FlaskClient
) -> None:
    body = shifted_request(app, APIXABAN_IN_SITU)
    (card,) = cards_of(post(client, body))
    assert card["indicator"] == "critical"
    assert [a["type"] for s in card["suggestions"] for a in s["actions"]] == ["delete"]


def test_order_select_judges_only_the_selected_drafts(app: Flask, client: FlaskClient) -> None:
    body = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL, "order-select")
    (enoxaparin,) = drafts_of(body)
    apixaban = copy.deepcopy(enoxaparin)
    apixaban["id"] = "o1-draft-apixaban"
    apixaban["medicationCodeableConcept"] = {"text": "apixaban 5 mg tablet"}
    apixaban["dosageInstruction"][0].pop("doseAndRate")
    apixaban["dosageInstruction"][0]["text"] = "apixaban 5 mg twice daily"
    body["context"]["draftOrders"]["entry"].append({"resource": apixaban})
    body["context"]["selections"] = ["MedicationRequest/o1-draft-apixaban"]
    (card,) = cards_of(post(client, body))
    assert card["summary"].startswith("Apixaban")
    # order-sign judges every draft.
    body["hook"] = "order-sign"
    del body["context"]["selections"]
    summaries = [c["summary"] for c in cards_of(post(client, body))]
    assert [s.split(" ")[0] for s in summaries] == ["Enoxaparin", "Apixaban"]


def test_safe_drafts_get_no_card(app: Flask, client: FlaskClient) -> None:
    body = shifted_request(app, EXAMPLES / "o5-heparin-5000-twice-daily-no-card")
    assert cards_of(post(client, body)) == []


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        pytest.param(
            lambda c: c["draftOrders"].update(entry={"resource": {}}),
            "context.draftOrders.entry",
            id="entry-not-array",
        ),
        pytest.param(
            lambda c: c["draftOrders"]["entry"].append("MedicationRequest/x"),
            "context.draftOrders.entry[1]",
            id="entry-not-object",
        ),
        pytest.param(
            lambda c: c["draftOrders"]["entry"].append({"fullUrl": "x"}),
            "context.draftOrders.entry[1].resource",
            id="entry-without-resource",
        ),
        pytest.param(
            lambda c: c["draftOrders"]["entry"].append({"resource": {"id": "x"}}),
            "context.draftOrders.entry[1].resource.resourceType",
            id="resource-without-type",
        ),
        pytest.param(
            lambda c: c.update(selections=["MedicationRequest/not-a-draft"]),
            "context.selections[0]",
            id="selection-not-in-drafts",
        ),
    ],
)
def test_unreadable_draft_orders_are_a_400_naming_the_path(
    app: Flask, client: FlaskClient, mutate: Any, path: str
) -> None:
    body = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL, "order-select")
    mutate(body["context"])
    outcome = assert_operation_outcome(post(client, body), 400)
    assert path in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "draft_orders",
    [
        pytest.param({"resourceType": "Parameters"}, id="not-a-request-resource"),
        pytest.param([], id="array"),
        pytest.param(None, id="null"),
    ],
)
def test_draft_orders_that_are_no_resource_are_a_400(
    app: Flask, client: FlaskClient, draft_orders: Any
) -> None:
    body = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL)
    body["context"]["draftOrders"] = draft_orders
    outcome = assert_operation_outcome(post(client, body), 400)
    assert "draftOrders" in outcome["issue"][0]["diagnostics"]


def test_hooks_are_routed_to_the_service_that_answers_them(app: Flask, client: FlaskClient) -> None:
    order = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL)
    outcome = assert_operation_outcome(post(client, order, service_url(app)), 400)
    assert "'patient-view' hook, not 'order-sign'" in outcome["issue"][0]["diagnostics"]
    view = make_hook_request(app, EXAMPLES / "s1-labour-epidural-lmwh-weakness")
    outcome = assert_operation_outcome(post(client, view), 400)
    assert "'order-select' and 'order-sign' hook" in outcome["issue"][0]["diagnostics"]


def test_record_text_never_reaches_the_card(app: Flask, client: FlaskClient) -> None:
    body = shifted_request(app, ENOXAPARIN_AFTER_REMOVAL)
    (draft,) = drafts_of(body)
    draft["medicationCodeableConcept"]["text"] = "enoxaparin <img src=x onerror=alert(1)> **x**"
    draft["id"] = "o1-draft-enoxaparin"
    (card,) = cards_of(post(client, body))
    assert "<img" not in card["detail"] and "**x**" not in card["detail"]
    # The draft is cited in the evidence extension, not in the clinician's text (issue 13).
    assert "MedicationRequest/o1-draft-enoxaparin" not in card["detail"]
    assert "MedicationRequest/o1-draft-enoxaparin" in json.dumps(card["extension"])


def test_references_that_could_break_markdown_are_escaped() -> None:
    assert reference_markdown("MedicationRequest/a-1.2") == "`MedicationRequest/a-1.2`"
    assert reference_markdown("MedicationRequest/a`b*c") == "MedicationRequest/a\\`b\\*c"
    assert escape_markdown("[x](javascript:y)") == "\\[x\\]\\(javascript:y\\)"


def test_every_order_scenario_names_its_hook() -> None:
    orders = [p for p in EXAMPLES.iterdir() if p.name.startswith("o") and p.is_dir()]
    assert len(orders) >= 8
    assert all(load_scenario(p)["hook"] in ("order-select", "order-sign") for p in orders)


def test_facility_time_zone_gives_local_time_and_utc() -> None:
    """With EPIDURAL_CDS_FACILITY_TIMEZONE set, the earliest time is local (and UTC in the
    detail); the scenario's 12:00 UTC is 06:00 in Chicago in November."""
    zoned = dev_app(facility_timezone="America/Chicago")
    body = encode(make_hook_request(zoned, ENOXAPARIN_AFTER_REMOVAL))
    handler = service_state(zoned).handler
    outcome = handler.handle(
        example_service_id(zoned, ENOXAPARIN_AFTER_REMOVAL),
        body,
        now=scenario_now(ENOXAPARIN_AFTER_REMOVAL),
    )
    (card,) = json.loads(json.dumps(outcome.response))["cards"]
    assert "first dose not before 2026-11-30 06:00 -06:00" in card["summary"]
    assert "2026-11-30 06:00 -06:00 (2026-11-30 12:00 +00:00)" in card["detail"]
    assert "America/Chicago" in card["detail"] and "no facility time zone" not in card["detail"]


def test_an_unknown_facility_time_zone_is_refused_at_startup() -> None:
    with pytest.raises(ConfigError, match="EPIDURAL_CDS_FACILITY_TIMEZONE"):
        Settings.from_mapping({"facility_timezone": "Mars/Olympus_Mons"})
    # The facility zone defaults to UTC (issue 13: one zone per response, shown with its offset).
    assert Settings().facility_timezone == "UTC"


def test_every_order_summary_stays_under_140_characters() -> None:
    """CDS Hooks: summary < 140 characters, for the longest drug, dose class, event and zone."""
    from service import content as content_module

    loaded = content_module.load()
    words = loaded.orders
    dose_classes = [
        loaded.wording.phrases[k] for k in ("dose_low", "dose_high", "dose_assumed_high")
    ]
    for template in words.summaries.values():
        for rule in loaded.asra.drugs.values():
            for dose_class in dose_classes:
                for event in words.events.values():
                    summary = template.format_map(
                        {
                            "drug_title": rule.names[0].title(),
                            "dose_class": dose_class,
                            "interval": "240 h",
                            "event": event,
                            "time_local": "2026-11-30 12:00 AKST",
                            "inr": "12.5",
                            "limit": "1.5",
                            "days": "4 d",
                            "hours": "24 h",
                        }
                    )
                    assert len(summary) < 140, summary


def test_a_recent_platelet_count_silences_the_heparin_course_card(app: Flask) -> None:
    example = EXAMPLES / "o9-heparin-after-5-days-no-platelet-count"
    handler = service_state(app).handler
    now = scenario_now(example)

    def cards_for(bundle: dict[str, Any]) -> list[dict[str, Any]]:
        body = encode(make_hook_request(app, example, bundle=bundle))
        outcome = handler.handle(example_service_id(app, example), body, now=now)
        found: list[dict[str, Any]] = outcome.response["cards"]
        return found

    bundle = load_bundle(example)
    (card,) = cards_for(bundle)
    assert card["indicator"] == "warning" and "suggestions" not in card
    recent = copy.deepcopy(bundle)
    platelets = next(
        e["resource"] for e in recent["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    platelets["effectiveDateTime"] = "2026-11-30T06:00:00+00:00"  # 3 h before now
    assert cards_for(recent) == []
