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

from service.card_check import card_problems
from service.cdshooks import schemas
from service.content import load as load_content
from service.fhir.local_search import bundle_resources
from service.fhir.timeshift import shift_times
from service.render import EXTENSION_KEY as EVIDENCE_EXTENSION
from tests.protocol.conftest import (
    EXAMPLE_DIRS,
    JSON,
    USER_ID,
    delta_to_present,
    encode,
    example_service_id,
    find_empty,
    load_bundle,
    load_scenario,
    make_hook_request,
    scenario_hook,
    scenario_now,
    service_state,
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
BASE_URL = "http://localhost/"  # what the HTTP layer passes as the request's base
RAW_REFERENCE = re.compile(r"\b[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}")
TIME = re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?: ([+-]\d{2}:\d{2}))?")


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
# Findings-based cards (action first, evidence from the record): patient-view's. Order-hook
# cards judge a draft instead, and have their own format test below.
WITH_FINDING_CARDS = _ids(
    [p for p in EXAMPLE_DIRS if _expected(p) and scenario_hook(p) == "patient-view"]
)
WITH_ORDER_CARDS = _ids(
    [p for p in EXAMPLE_DIRS if _expected(p) and scenario_hook(p) != "patient-view"]
)
# The stat-order checks are patient-view's: order-hook cards change the draft instead.
WITH_CRITICAL = _ids(
    [
        p
        for p in EXAMPLE_DIRS
        if scenario_hook(p) == "patient-view"
        and any(c["indicator"] == "critical" for c in _expected(p))
    ]
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
            body = encode(make_hook_request(app, example))
            outcome = handler.handle(
                example_service_id(app, example),
                body,
                now=scenario_now(example),
                base_url=BASE_URL,
            )
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


WITH_SUGGESTIONS = _ids(
    [p for p in EXAMPLE_DIRS if any("suggestions" in c for c in _expected(p))], "suggestions"
)


@pytest.mark.parametrize("example", WITH_SUGGESTIONS)
def test_expected_suggestions(example: Path, evaluate: Callable[[Path], dict[str, Any]]) -> None:
    """Where a scenario lists a card's suggestions (optional ``suggestions``: exact labels, in
    order), the card offers exactly those: e.g. no second MRI when one is already ordered."""
    for card, expected in zip(all_cards(evaluate(example)), _expected(example), strict=True):
        if "suggestions" in expected:
            assert [s["label"] for s in card.get("suggestions", [])] == expected["suggestions"]


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
        # Alternatives (MRI regions, with or without holding an anticoagulant) are one choice.
        assert card["selectionBehavior"] == "at-most-one"
        assert card["suggestions"]
        assert sum(1 for s in card["suggestions"] if s.get("isRecommended")) <= 1
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
        # Unless the scenario says an MRI is already under way (and lists the suggestions left).
        expected = next(c for c in _expected(example) if c["indicator"] == "critical")
        if any("MRI" in label for label in expected.get("suggestions", ["MRI"])):
            assert spine_mri, "a critical card must offer a stat spine MRI (CPT 72148/72158, LOINC)"


@pytest.mark.parametrize("example", WITH_CARDS)
def test_emitted_resources_are_valid_fhir_r4(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    for card in all_cards(evaluate(example)):
        for action in actions(card):
            if action["type"] == "delete":
                assert "resource" not in action and action["resourceId"]  # cds-resp-2
                continue
            resource = action["resource"]
            model = get_fhir_model_class(resource["resourceType"])
            model.model_validate(resource)  # raises on an invalid resource


@pytest.mark.parametrize("example", WITH_FINDING_CARDS)
def test_text_only_evidence_says_uncoded_text(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    stored = resources_by_reference(example)
    for card in all_cards(evaluate(example)):
        refs = card["extension"][EVIDENCE_EXTENSION]
        cited = [stored[ref] for ref in refs if ref in stored]
        assert cited and len(cited) == len(refs), "the card should cite the records it rests on"
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


# -- bedside cards: safe, brief, action first, one zone, the guideline as source ----------------


@pytest.mark.parametrize("example", WITH_CARDS)
def test_cards_pass_the_response_check(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    content = load_content()
    for card in all_cards(evaluate(example)):
        prefix = card["links"][-1]["url"].rsplit("/", 1)[0] + "/"
        assert card_problems(card, content.card_urls, (prefix,)) == []
        assert "<" not in card["detail"].replace("<1 h", ""), "no raw angle bracket in detail"


@pytest.mark.parametrize("example", WITH_FINDING_CARDS)
def test_cards_are_action_first_and_within_budget(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    content = load_content()
    for card in all_cards(evaluate(example)):
        detail = card["detail"]
        lines = detail.splitlines()
        assert lines[0].startswith("**Found:**") and " ago" in lines[0], lines[0]
        assert lines[2].startswith("**Do now:**"), lines[2]
        assert len(detail) <= content.wording.detail_budget[card["indicator"]]
        assert RAW_REFERENCE.findall(detail) == [], "no raw FHIR ids in clinician text"
        assert "verified" not in detail.lower(), "verification notes belong to the rule book"
        heading = detail.split("**Found:** ", 1)[1].split(" — ", 1)[0]
        for extra in ("**Also noted:**", "**Also matched:**"):
            if extra in detail:
                assert heading not in detail.split(extra, 1)[1].split("\n", 1)[0]


@pytest.mark.parametrize("example", WITH_CARDS)
def test_cards_link_the_guideline_and_the_rule_book(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    content = load_content()
    labels = {s.label for s in content.sources.values()}
    for card in all_cards(evaluate(example)):
        assert card["source"]["label"] in labels, "source.label names the guideline"
        assert content.version in card["source"]["topic"]["display"]
        links = card["links"]
        assert all(link["type"] == "absolute" for link in links)
        rule_book = links[-1]["url"]
        assert re.fullmatch(r"https?://[^/]+(/.*)?/rule-book/R-\d{2}", rule_book), rule_book
        for link in links[:-1]:
            assert link["url"] in content.card_urls


@pytest.mark.parametrize("example", WITH_CARDS)
def test_every_time_in_a_response_has_one_offset(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    details = " ".join(card["detail"] for card in all_cards(evaluate(example)))
    offsets = {offset for offset in TIME.findall(details)}
    assert "" not in offsets, "every time is shown with its offset"
    assert len(offsets) <= 1, offsets


def test_warfarin_card_cites_no_enoxaparin_notice(
    evaluate: Callable[[Path], dict[str, Any]],
) -> None:
    example = next(p for p in EXAMPLE_DIRS if p.name == "s10-warfarin-inr-at-removal")
    (card,) = all_cards(evaluate(example))
    text = json.dumps({k: v for k, v in card.items() if k != "suggestions"}).lower()
    assert "enoxaparin" not in text and "fda" not in text


def test_no_obstetric_wording_after_an_injection(
    evaluate: Callable[[Path], dict[str, Any]],
) -> None:
    for example in EXAMPLE_DIRS:
        # s13a-c are labour epidurals (care already under way): not injections.
        if not example.name.startswith(("s2", "s3", "s5", "s6", "s9", "s11", "s13-", "s14")):
            continue
        for card in all_cards(evaluate(example)):
            text = (card["detail"] + card["source"]["label"]).lower()
            for word in ("childbirth", "obstetric", "infusion"):
                assert word not in text, (example.name, word)


# -- end to end through HTTP, at wall-clock time --------------------------------------------------


def post_shifted(app: Flask, client: FlaskClient, example: Path) -> TestResponse:
    """POST the example with every timestamp moved so that its ``now`` is the present."""
    bundle = shift_times(load_bundle(example), delta_to_present(example))
    body = make_hook_request(app, example, bundle=bundle)
    if "draftOrders" in body["context"]:
        body["context"]["draftOrders"] = shift_times(
            body["context"]["draftOrders"], delta_to_present(example)
        )
    url = f"/cds-services/{example_service_id(app, example)}"
    return client.post(url, data=encode(body), content_type=JSON)


# Order cards state the earliest safe time itself, which moves with the record: compare them with
# their times masked (the handler tests above check the exact times at the scenario's now).
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def _masked(example: Path, text: str) -> str:
    return text if scenario_hook(example) == "patient-view" else _STAMP.sub("<time>", text)


@pytest.mark.parametrize("example", ALL)
def test_http_end_to_end_with_shifted_times(example: Path, app: Flask, client: FlaskClient) -> None:
    response = post_shifted(app, client, example)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == JSON
    document = response.get_json()
    assert schemas.errors(schemas.HOOK_RESPONSE, document) == []
    got = [(i, _masked(example, s)) for i, s in pairs(document["cards"])]
    assert got == [(i, _masked(example, s)) for i, s in pairs(_expected(example))]


@pytest.mark.parametrize(
    "example", [p for p in ALL_MENTIONS if load_scenario(p.values[0]).get("detailMustMention")]
)
def test_http_end_to_end_detail_mentions(example: Path, app: Flask, client: FlaskClient) -> None:
    response = post_shifted(app, client, example)
    details = " ".join(card.get("detail", "") for card in response.get_json()["cards"]).lower()
    details = _masked(example, details)
    wanted = [_masked(example, p.lower()) for p in load_scenario(example)["detailMustMention"]]
    missing = [p for p in wanted if p not in details]
    assert missing == []


@pytest.mark.parametrize("example", WITH_ORDER_CARDS)
def test_order_cards_name_no_raw_ids_and_keep_their_budget(
    example: Path, evaluate: Callable[[Path], dict[str, Any]]
) -> None:
    content = load_content()
    for card in all_cards(evaluate(example)):
        detail = card["detail"]
        assert len(detail) <= content.wording.detail_budget[card["indicator"]]
        assert RAW_REFERENCE.findall(detail) == [], "no raw FHIR ids in clinician text"
        assert card["extension"][EVIDENCE_EXTENSION], "the draft and the procedure are cited"
