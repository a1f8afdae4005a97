"""Acceptance scenarios: every directory in ``fhir_examples/`` is a test case.

Each example is turned into a patient-view request with the prefetch an EHR would send, evaluated
at the scenario's ``now`` (through the handler, since the HTTP route reads the wall clock), and
checked for the expected cards and for CDS Hooks 2.0 response rules. The same examples then go
through HTTP with the whole record moved to the present (:func:`shift_times`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.cdshooks import schemas
from service.fhir.local_search import bundle_resources
from service.fhir.timeshift import shift_times
from tests.protocol.conftest import (
    EXAMPLE_DIRS,
    JSON,
    USER_ID,
    delta_to_present,
    encode,
    find_empty,
    load_bundle,
    load_scenario,
    make_request,
    scenario_now,
    service_id,
    service_state,
    service_url,
)

CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
# Lumbar, thoracic and whole-spine MRI (clinical-spec §5.4; a cervical or thoracic procedure is
# imaged through the whole-spine study, §3.1 imaging region).
SPINE_MRI = {
    (CPT, "72148"),
    (CPT, "72158"),
    (CPT, "72146"),
    (LOINC, "30679-5"),
    (LOINC, "24967-2"),
    (LOINC, "36532-0"),
    (LOINC, "24981-3"),
    (LOINC, "30854-4"),
    (LOINC, "30855-1"),
}
REASON_TYPES = {"Condition", "Observation", "DiagnosticReport", "DocumentReference"}
DETAIL_REFERENCE = re.compile(r"`([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})`")


# Known service bugs, by example: the affected tests become strict xfails, so a fix shows up as
# XPASS. Empty while no bug is known.
KNOWN_BUGS: dict[str, dict[str, str]] = {}


def _ids(paths: list[Path], bugs: str | None = None) -> list[Any]:
    known = KNOWN_BUGS.get(bugs or "", {})
    return [
        pytest.param(p, id=p.name, marks=pytest.mark.xfail(strict=True, reason=known[p.name]))
        if p.name in known
        else pytest.param(p, id=p.name)
        for p in paths
    ]


def _expected(path: Path) -> list[dict[str, Any]]:
    cards: list[dict[str, Any]] = load_scenario(path)["expected"]["cards"]
    return cards


ALL = _ids(EXAMPLE_DIRS)
WITH_CARDS = _ids([p for p in EXAMPLE_DIRS if _expected(p)])
WITH_CRITICAL = _ids(
    [p for p in EXAMPLE_DIRS if any(c["indicator"] == "critical" for c in _expected(p))]
)
WITH_MENTIONS = _ids(
    [p for p in EXAMPLE_DIRS if load_scenario(p).get("detailMustMention")], "mentions"
)
WITH_CARDS_LABELS = _ids([p for p in EXAMPLE_DIRS if _expected(p)], "labels")
ALL_MENTIONS = _ids(EXAMPLE_DIRS, "mentions")


def pairs(cards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(card["indicator"], card["summary"]) for card in cards]


@pytest.fixture(scope="module")
def evaluate(app: Flask) -> Callable[[Path], dict[str, Any]]:
    """The response for an example at its scenario ``now`` (cached per example)."""
    cache: dict[str, dict[str, Any]] = {}
    handler = service_state(app).handler

    def run(example: Path) -> dict[str, Any]:
        if example.name not in cache:
            body = encode(make_request(app, example))
            outcome = handler.handle(service_id(app), body, now=scenario_now(example))
            # Through JSON, as the HTTP layer sends it.
            cache[example.name] = json.loads(json.dumps(outcome.response))
        return cache[example.name]

    return run


def resources_by_reference(example: Path) -> dict[str, dict[str, Any]]:
    return {f"{r['resourceType']}/{r['id']}": r for r in bundle_resources(load_bundle(example))}


def all_cards(response: dict[str, Any]) -> list[dict[str, Any]]:
    cards: list[dict[str, Any]] = response["cards"]
    return cards


def actions(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for suggestion in card.get("suggestions", []):
        yield from suggestion.get("actions", [])


def codings(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (c.get("system", ""), c.get("code", "")) for c in resource.get("code", {}).get("coding", [])
    }


def describes(resource: dict[str, Any], *words: str) -> bool:
    code = resource.get("code", {})
    text = " ".join([code.get("text", "")] + [c.get("display", "") for c in code.get("coding", [])])
    return any(re.search(word, text, re.IGNORECASE) for word in words)


# -- the helper itself ----------------------------------------------------------------------------


def test_shift_times_keeps_offsets_and_leaves_other_strings() -> None:
    tree = {
        "a": "2026-04-14T10:00:00-05:00",
        "b": ["2026-03-09T22:00:00Z", {"c": "2026-03-09T22:00:00.123+01:00"}],
        "birthDate": "1994-07-15",
        "code": "3264",
        "month": "2026-03",
        "text": "removed at 2026-03-09T22:00:00+00:00 per note",
        "n": 5,
    }
    out = shift_times(tree, timedelta(days=2, hours=3))
    assert out["a"] == "2026-04-16T13:00:00-05:00"
    assert out["b"][0] == "2026-03-12T01:00:00Z"
    assert out["b"][1]["c"] == "2026-03-12T01:00:00.123+01:00"
    assert out["birthDate"] == "1994-07-17"
    unchanged = (out["code"], out["month"], out["text"], out["n"])
    assert unchanged == ("3264", "2026-03", tree["text"], 5)
    assert tree["a"] == "2026-04-14T10:00:00-05:00", "the input must not be changed"


def test_delta_to_present_never_overshoots() -> None:
    example = EXAMPLE_DIRS[0]
    present = datetime(2030, 1, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    delta = delta_to_present(example, present)
    assert delta.microseconds == 0
    assert timedelta(0) <= present - (scenario_now(example) + delta) < timedelta(seconds=1)


def test_there_are_examples_of_every_kind() -> None:
    # Guards against the filtered parameter lists below silently becoming empty.
    assert ALL and WITH_CARDS and WITH_CRITICAL and WITH_MENTIONS
    assert any(not _expected(p) for p in EXAMPLE_DIRS), "no example expects silence"


# -- the expected answer --------------------------------------------------------------------------


@pytest.mark.parametrize("example", ALL)
def test_expected_cards(example: Path, evaluate: Callable[[Path], dict[str, Any]]) -> None:
    assert pairs(all_cards(evaluate(example))) == pairs(_expected(example))


@pytest.mark.parametrize("example", WITH_MENTIONS)
def test_detail_mentions(example: Path, evaluate: Callable[[Path], dict[str, Any]]) -> None:
    cards = all_cards(evaluate(example))
    assert cards, "phrases are expected but there is no card"
    details = " ".join(card.get("detail", "") for card in cards).lower()
    missing = [p for p in load_scenario(example)["detailMustMention"] if p.lower() not in details]
    assert missing == []


# -- CDS Hooks 2.0 response rules -----------------------------------------------------------------


@pytest.mark.parametrize("example", ALL)
def test_response_is_schema_valid(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    assert schemas.errors(schemas.HOOK_RESPONSE, evaluate(example)) == []


@pytest.mark.parametrize("example", ALL)
def test_response_has_no_empty_values(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    response = evaluate(example)
    if response == {"cards": []}:
        return  # the one empty array the spec allows: "no guidance"
    assert find_empty(response) == []


@pytest.mark.parametrize("example", WITH_CARDS)
def test_cards_are_complete(example: Path, evaluate: Callable[[Path], dict[str, Any]]) -> None:
    cards = all_cards(evaluate(example))
    uuids: list[str] = []
    for card in cards:
        uuids.append(str(uuid.UUID(card["uuid"])))
        assert 0 < len(card["summary"]) < 140, card["summary"]
        assert card["indicator"] in ("info", "warning", "critical")
        assert isinstance(card.get("detail"), str) and card["detail"].strip()
        source = card["source"]
        assert source["label"].strip()
        if "url" in source:  # optional: only when a cited source has an address
            assert re.match(r"https://[^/\s]+", source["url"]), source["url"]
        assert source["topic"]["system"].strip() and source["topic"]["code"].strip()
        assert card["overrideReasons"], "cards should offer override reasons"
        for reason in card["overrideReasons"]:
            assert reason["system"].strip() and reason["code"].strip()
            assert reason["display"].strip(), "overrideReasons MUST have display"
        if "suggestions" in card:
            assert card["selectionBehavior"] in ("at-most-one", "any")
        for suggestion in card.get("suggestions", []):
            uuids.append(str(uuid.UUID(suggestion["uuid"])))
    assert len(uuids) == len(set(uuids)), "card and suggestion uuids must be unique"


@pytest.mark.parametrize("example", WITH_CRITICAL)
def test_critical_cards_suggest_stat_orders(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    patient = load_scenario(example)["patientId"]
    stored = resources_by_reference(example)
    critical = [c for c in all_cards(evaluate(example)) if c["indicator"] == "critical"]
    assert critical
    for card in critical:
        assert card["selectionBehavior"] == "any"
        assert card["suggestions"]
        spine_mri = []
        for suggestion in card["suggestions"]:
            assert suggestion["label"].strip()
            assert suggestion["actions"]
            for action in suggestion["actions"]:
                assert action["description"].strip()
                resource = action["resource"]
                if action["type"] == "update":
                    # Safety note 3: an anticoagulant order is held pending review (never
                    # deleted), as a whole updated resource, with the thrombotic-risk caveat.
                    ref = f"{resource['resourceType']}/{resource['id']}"
                    assert resource["resourceType"] == "MedicationRequest" and ref in stored
                    assert stored[ref]["status"] == "active" and resource["status"] == "on-hold"
                    assert "thrombotic risk" in action["description"]
                    continue
                assert action["type"] == "create"
                assert resource["resourceType"] == "ServiceRequest"
                assert resource["status"] == "draft"
                assert resource["intent"] == "order"
                assert resource["subject"] == {"reference": f"Patient/{patient}"}
                assert resource["requester"] == {"reference": USER_ID}
                assert resource["code"]["coding"], "orders need a code"
                if describes(resource, r"\bMRI?\b", "neurosurg"):
                    assert resource["priority"] == "stat", resource["code"]
                procedures = [ref["reference"] for ref in resource.get("supportingInfo", [])]
                assert procedures, "the order must point at the epidural Procedure"
                for ref in procedures:
                    assert ref.startswith("Procedure/") and ref in stored, ref
                    assert stored[ref]["status"] != "entered-in-error", ref
                for reason in resource.get("reasonReference", []):
                    ref = reason["reference"]
                    assert ref.split("/")[0] in REASON_TYPES and ref in stored, ref
                if resource["priority"] == "stat" and codings(resource) & SPINE_MRI:
                    spine_mri.append(suggestion["label"])
        assert spine_mri, "a critical card must offer a stat spine MRI (CPT 72148/72158, LOINC)"


@pytest.mark.parametrize("example", WITH_CARDS)
def test_emitted_resources_are_valid_fhir_r4(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    for card in all_cards(evaluate(example)):
        for action in actions(card):
            resource = action["resource"]
            model = get_fhir_model_class(resource["resourceType"])
            model.model_validate(resource)  # raises on an invalid resource


@pytest.mark.parametrize("example", WITH_CARDS)
def test_text_only_evidence_says_uncoded_text(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    stored = resources_by_reference(example)
    for card in all_cards(evaluate(example)):
        cited = [stored[ref] for ref in DETAIL_REFERENCE.findall(card["detail"]) if ref in stored]
        assert cited, "the detail should cite the records it is based on"
        uncoded = [r for r in cited if "code" in r and not r["code"].get("coding")]
        if uncoded:
            assert "uncoded text" in card["detail"].lower(), [r["id"] for r in uncoded]


def test_some_example_has_text_only_evidence() -> None:
    # Keeps the test above from being vacuous.
    def text_only(example: Path) -> bool:
        return any(
            "code" in r and not r["code"].get("coding")
            for r in bundle_resources(load_bundle(example))
            if r["resourceType"] in ("Procedure", "Condition")
        )

    assert any(text_only(p.values[0]) for p in WITH_CARDS)


@pytest.mark.parametrize("example", WITH_CARDS_LABELS)
def test_detail_shows_no_internal_identifiers(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    for card in all_cards(evaluate(example)):
        raw = re.findall(r"\*\*([a-z]+(?:_[a-z]+)+)\*\*", card["detail"])
        assert raw == [], f"snake_case identifiers shown to clinicians: {raw}"


# -- end to end through HTTP, at wall-clock time --------------------------------------------------


def post_shifted(app: Flask, client: FlaskClient, example: Path) -> TestResponse:
    """POST the example with every timestamp moved so that its ``now`` is the present."""
    bundle = shift_times(load_bundle(example), delta_to_present(example))
    body = make_request(app, example, bundle=bundle)
    return client.post(service_url(app), data=encode(body), content_type=JSON)


@pytest.mark.parametrize("example", ALL)
def test_http_end_to_end_with_shifted_times(example: Path, app: Flask, client: FlaskClient) -> None:
    response = post_shifted(app, client, example)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == JSON
    document = response.get_json()
    assert schemas.errors(schemas.HOOK_RESPONSE, document) == []
    assert pairs(document["cards"]) == pairs(_expected(example))


@pytest.mark.parametrize(
    "example", [p for p in ALL_MENTIONS if load_scenario(p.values[0]).get("detailMustMention")]
)
def test_http_end_to_end_detail_mentions(example: Path, app: Flask, client: FlaskClient) -> None:
    response = post_shifted(app, client, example)
    details = " ".join(card.get("detail", "") for card in response.get_json()["cards"]).lower()
    missing = [p for p in load_scenario(example)["detailMustMention"] if p.lower() not in details]
    assert missing == []
