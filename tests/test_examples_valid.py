"""Structural checks of every example patient in ``fhir_examples/``.

Why: the examples are loaded into real FHIR servers (as PUT transactions), turned into hook
requests, and used as acceptance scenarios for the clinical rules. A malformed resource, a
dangling reference, a clashing id or a timestamp after ``now`` would make a scenario test pass or
fail for the wrong reason, so these invariants are checked here, independently of the engine.
Resources are validated with the ``fhir.resources`` R4B models (FHIR 4.3, whose JSON for these
resource types is the same as R4).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.fhir.local_search import bundle_resources

EXAMPLES = Path(__file__).resolve().parent.parent / "fhir_examples"
EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# A FHIR dateTime/instant with a time part; the offset group is optional so we can report it.
DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?"
)
SCENARIO_KEYS = {"id", "scenario", "title", "description", "patientId", "now", "expected"}
# Order-hook scenarios (issue 17) name their hook and carry the draft orders (and selections).
OPTIONAL_KEYS = {"detailMustMention", "hook", "draftOrders", "selections"}
INDICATORS = {"info", "warning", "critical"}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z'\"(])")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (json-path, value) pair below ``node``."""
    out: list[tuple[str, Any]] = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _walk(value, f"{path}[{index}]")
    return out


def _references(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (path, value["reference"])
        for path, value in _walk(resource)
        if isinstance(value, dict) and isinstance(value.get("reference"), str)
    ]


def _parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(params=EXAMPLE_DIRS, ids=[p.name for p in EXAMPLE_DIRS])
def example(request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    directory: Path = request.param
    return directory, _load(directory / "bundle.json"), _load(directory / "scenario.json")


def test_there_are_examples() -> None:
    assert len(EXAMPLE_DIRS) >= 12


@pytest.mark.parametrize("directory", EXAMPLE_DIRS, ids=[p.name for p in EXAMPLE_DIRS])
def test_directory_holds_exactly_bundle_and_scenario(directory: Path) -> None:
    assert sorted(p.name for p in directory.iterdir()) == ["bundle.json", "scenario.json"]


def test_bundle_is_a_put_transaction(example: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    _, bundle, _ = example
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    assert 3 <= len(bundle["entry"]) <= 15
    for entry in bundle["entry"]:
        resource = entry["resource"]
        key = f"{resource['resourceType']}/{resource['id']}"
        assert entry["request"] == {"method": "PUT", "url": key}
        if "fullUrl" in entry:
            assert entry["fullUrl"] == key, "fullUrl must be the relative Type/id, not urn:uuid"


def test_bundle_validates_as_fhir(example: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    _, bundle, _ = example
    get_fhir_model_class("Bundle").model_validate(bundle)
    for resource in bundle_resources(bundle):
        model = get_fhir_model_class(resource["resourceType"])
        model.model_validate(resource)


def test_ids_are_valid_and_unique(example: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    _, bundle, _ = example
    resources = bundle_resources(bundle)
    for resource in resources:
        assert FHIR_ID.fullmatch(resource.get("id", "")), resource.get("id")
    counts = Counter(r["id"] for r in resources)
    assert [i for i, n in counts.items() if n > 1] == []


def test_ids_are_unique_across_examples() -> None:
    """All examples are loaded into one FHIR server, so a shared id would overwrite another's."""
    keys: Counter[str] = Counter()
    for directory in EXAMPLE_DIRS:
        for resource in bundle_resources(_load(directory / "bundle.json")):
            keys[f"{resource['resourceType']}/{resource['id']}"] += 1
    assert [k for k, n in keys.items() if n > 1] == []


def test_references_resolve_and_patient_is_the_scenarios(
    example: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, bundle, scenario = example
    resources = bundle_resources(bundle)
    present = {f"{r['resourceType']}/{r['id']}" for r in resources}
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert [p["id"] for p in patients] == [scenario["patientId"]]
    for resource in resources:
        if resource["resourceType"] != "Patient":
            owner = resource.get("subject") or resource.get("patient")
            assert owner == {"reference": f"Patient/{scenario['patientId']}"}, resource["id"]
        for path, ref in _references(resource):
            assert ref in present, f"{resource['id']}{path} -> {ref} is not in the bundle"
            if ref.startswith("Patient/"):
                assert ref == f"Patient/{scenario['patientId']}", f"{resource['id']}{path}"


def test_scenario_file(example: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    directory, _, scenario = example
    assert SCENARIO_KEYS <= set(scenario) <= SCENARIO_KEYS | OPTIONAL_KEYS
    assert scenario["id"] == directory.name
    assert re.fullmatch(r"S\d+[a-z]?|none", scenario["scenario"])
    assert scenario["title"].strip()
    sentences = SENTENCE_END.split(scenario["description"].strip())
    assert 2 <= len(sentences) <= 5, "description: 2-5 sentences a clinician can read"
    mentions = scenario.get("detailMustMention", [])
    assert isinstance(mentions, list)
    assert all(isinstance(m, str) and m.strip() for m in mentions)


def test_expected_cards(example: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    _, _, scenario = example
    cards = scenario["expected"]["cards"]
    assert isinstance(cards, list)
    for card in cards:
        assert {"indicator", "summary"} <= set(card) <= {"indicator", "summary", "suggestions"}
        labels = card.get("suggestions", [])
        assert isinstance(labels, list) and all(isinstance(x, str) and x for x in labels)
        assert card["indicator"] in INDICATORS
        assert 0 < len(card["summary"]) < 140, len(card["summary"])
    # clinical-spec §3.2: at most one critical card per patient per call.
    assert sum(c["indicator"] == "critical" for c in cards) <= 1
    if scenario.get("detailMustMention"):
        assert cards, "detailMustMention needs an expected card"


def test_now_and_every_timestamp_have_offsets_and_precede_now(
    example: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, bundle, scenario = example
    now = _parse_instant(scenario["now"])
    assert now.tzinfo is not None and DATETIME.fullmatch(scenario["now"])
    # The one future time a record may hold: the planned removal (performedPeriod.end) of a
    # catheter still in place (status in-progress).
    planned = {
        f".entry[{i}].resource.performedPeriod.end"
        for i, e in enumerate(bundle["entry"])
        if e["resource"]["resourceType"] == "Procedure" and e["resource"]["status"] == "in-progress"
    }
    for path, value in _walk(bundle):
        if isinstance(value, str) and (match := DATETIME.fullmatch(value)):
            assert match.group("tz"), f"{path}: {value} has no timezone offset"
            if path in planned:
                continue
            assert _parse_instant(value) <= now, f"{path}: {value} is after now ({scenario['now']})"


def test_patient_has_gender_and_birth_date(
    example: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, bundle, scenario = example
    patient = next(r for r in bundle_resources(bundle) if r["resourceType"] == "Patient")
    assert patient["gender"] in {"male", "female", "other", "unknown"}
    born = datetime.strptime(patient["birthDate"], "%Y-%m-%d").date()
    assert born < _parse_instant(scenario["now"]).date()


# Ages stated in clinical-spec §6 for the scenarios that give one.
SPEC_AGES = {"S1": 31, "S2a": 58, "S2b": 58, "S3": 66, "S3b": 66, "S5": 52}


def test_patient_age_matches_the_spec() -> None:
    checked: set[str] = set()
    for directory in EXAMPLE_DIRS:
        scenario = _load(directory / "scenario.json")
        if scenario["scenario"] not in SPEC_AGES:
            continue
        resources = bundle_resources(_load(directory / "bundle.json"))
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        born = datetime.strptime(patient["birthDate"], "%Y-%m-%d").date()
        today = _parse_instant(scenario["now"]).date()
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        assert age == SPEC_AGES[scenario["scenario"]], directory.name
        checked.add(scenario["scenario"])
    assert checked == set(SPEC_AGES)


def test_codings_have_system_code_and_display(
    example: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    """Codes must be attributable to a code system (clinical-spec §5), with a display."""
    _, bundle, _ = example
    for path, value in _walk(bundle):
        if path.endswith("]") and ".coding[" in path and isinstance(value, dict):
            assert value.get("system") and value.get("code"), path
            if not value["system"].startswith("http://terminology.hl7.org/CodeSystem/condition-"):
                assert value.get("display"), f"{path} has no display"
