"""The code lists as FHIR ValueSets (cards/valuesets/) and the VSAC import path.

Every ValueSet must be a valid FHIR R4(B) resource, so an informaticist can open it in any FHIR
tool; the loader accepts only the subset in cards/schema/valueset.schema.json and names file and
JSON path on every problem. An imported VSAC expansion adds codes with status VSAC.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.valueset import ValueSet

from service import content as content_module
from service.clinical.terminology import UNVERIFIED, VSAC
from service.errors import ContentError

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "cards"
VALUESETS = sorted((CARDS / "valuesets").glob("*.json"))
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
STATUS_URL = "https://epidural-cds.example.org/fhir/StructureDefinition/verification-status"


def expansion(*codes: tuple[str, str, str]) -> dict[str, Any]:
    """A VSAC-style ValueSet expansion of ``(system, code, display)`` triples."""
    return {
        "resourceType": "ValueSet",
        "id": "2.16.840.1.113883.3.117.1.7.1.218",
        "url": "http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113883.3.117.1.7.1.218",
        "version": "20240101",
        "name": "UnfractionatedHeparin",
        "title": "Unfractionated Heparin",
        "status": "active",
        "expansion": {
            "timestamp": "2024-01-01T00:00:00Z",
            "total": len(codes),
            "contains": [
                {"system": system, "version": "2024-01", "code": code, "display": display}
                for system, code, display in codes
            ],
        },
    }


HEPARIN_IMPORT = expansion(
    (RXNORM, "1361615", "heparin sodium, porcine 5000 UNT/ML Injectable Solution"),
    (RXNORM, "5224", "heparin"),
)


@pytest.fixture
def cards(tmp_path: Path) -> Path:
    """A private copy of the shipped content, safe to change."""
    target = tmp_path / "cards"
    shutil.copytree(CARDS, target)
    return target


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def problems_of(directory: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ContentError) as caught:
        content_module.load(directory)
    return caught.value.problems


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --------------------------------------------------------------------------- shipped files


def test_there_is_one_valueset_per_concept_and_no_codes_yaml() -> None:
    assert not (CARDS / "codes.yaml").exists()
    names = {path.stem for path in VALUESETS}
    assert set(content_module.REQUIRED_CONCEPTS) <= names


@pytest.mark.parametrize("path", VALUESETS, ids=lambda p: p.stem)
def test_valueset_is_valid_fhir_r4b(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    resource = ValueSet.model_validate(doc)
    assert resource.id == path.stem.replace("_", "-")
    assert resource.url == f"https://epidural-cds.example.org/fhir/ValueSet/{resource.id}"
    assert resource.status == "active" and resource.description
    includes = list(resource.compose.include) if resource.compose else []
    systems = [include.system for include in includes]
    assert len(systems) == len(set(systems)), "one include per code system"
    for include in includes:
        for concept in include.concept or ():
            statuses = [e.valueCode for e in concept.extension or () if e.url == STATUS_URL]
            assert len(statuses) == 1 and concept.display


def test_every_code_is_usable_except_unverified() -> None:
    loaded = content_module.load()
    codes = loaded.lexicon.codes
    total = 0
    for name, concept_codes in codes.concepts.items():
        for code in concept_codes:
            total += 1
            found = [
                m.concept for m in codes.match_coding({"system": code.system, "code": code.code})
            ]
            assert code.usable == (code.status != UNVERIFIED)
            assert (name in found) == code.usable, (name, code)
    assert total >= 212


def test_loader_reads_statuses_and_laterality_from_extensions() -> None:
    codes = content_module.load().lexicon.codes
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    [match] = codes.match_coding({"system": icd, "code": "M79.605"})
    assert (match.concept, match.code.status, match.code.laterality) == ("leg_pain", "V", "left")
    [match] = codes.match_coding({"system": SNOMED, "code": "60389000"})
    assert match.code.laterality == "bilateral"
    assert codes.match_coding({"system": "http://www.ama-assn.org/go/cpt", "code": "0228T"}) == ()


# --------------------------------------------------------------------------- loader errors


def test_invalid_valueset_is_reported_with_file_and_path(cards: Path) -> None:
    path = cards / "valuesets" / "wbc.json"
    doc = json.loads(path.read_text())
    doc["compose"]["include"][0]["concept"][1]["extension"][0]["valueCode"] = "MAYBE"
    doc["compose"]["include"][0]["filter"] = [{"property": "concept", "op": "is-a", "value": "x"}]
    write_json(path, doc)
    problems = problems_of(cards)
    files_and_paths = {(file, where) for file, where, _ in problems}
    assert ("valuesets/wbc.json", "$.compose.include[0].concept[1].extension[0].valueCode") in (
        files_and_paths
    )
    assert ("valuesets/wbc.json", "$.compose.include[0]") in files_and_paths  # no filters


def test_cross_checks_name_file_and_path(cards: Path) -> None:
    crp = cards / "valuesets" / "crp.json"
    doc = json.loads(crp.read_text())
    doc["compose"]["include"][0]["system"] = "http://example.org/no-such-system"
    doc["id"] = "c-reactive-protein"
    write_json(crp, doc)
    (cards / "valuesets" / "wbc.json").unlink()  # required by the rules
    (cards / "valuesets" / "platelets.json").unlink()  # used by a prefetch query
    problems = problems_of(cards)
    assert (
        "valuesets/crp.json",
        "$.compose.include[0].system",
        "unknown system 'http://example.org/no-such-system' (not in systems.yaml)",
    ) in problems
    assert ("valuesets/crp.json", "$.id", "must be 'crp', from the file name") in problems
    assert ("valuesets/wbc.json", "$", "concept 'wbc' is required by the rules") in problems
    assert (
        "service.yaml",
        "$.services[0].prefetch.observations.code_concepts",
        "unknown concept 'platelets'",
    ) in problems


def test_unknown_system_short_name_in_service_yaml_is_reported(cards: Path) -> None:
    systems = (cards / "systems.yaml").read_text().replace("  loinc:", "  loinc_renamed:")
    (cards / "systems.yaml").write_text(systems)
    problems = problems_of(cards)
    assert (
        "service.yaml",
        "$.services[0].prefetch.observations.code_systems",
        "unknown system 'loinc'",
    ) in problems


def test_stale_codes_yaml_is_not_silently_ignored(cards: Path) -> None:
    (cards / "codes.yaml").write_text("systems: {}\nconcepts: {}\n")
    problems = problems_of(cards)
    assert [p for p in problems if p[0] == "codes.yaml"]


def test_vsac_status_is_accepted_in_a_curated_valueset(cards: Path) -> None:
    path = cards / "valuesets" / "local_anaesthetic.json"
    doc = json.loads(path.read_text())
    concept = next(c for c in doc["compose"]["include"][0]["concept"] if c["code"] == "35780")
    concept["extension"][0]["valueCode"] = VSAC
    write_json(path, doc)
    codes = content_module.load(cards).lexicon.codes
    [match] = codes.match_coding({"system": RXNORM, "code": "35780"})
    assert (match.concept, match.code.status) == ("local_anaesthetic", VSAC)


# --------------------------------------------------------------------------- VSAC imports


def test_vsac_import_adds_codes_with_status_vsac(cards: Path) -> None:
    before = content_module.load(cards).lexicon.codes.concepts["antithrombotic"]
    write_json(cards / "valuesets" / "imports" / "antithrombotic.json", HEPARIN_IMPORT)
    codes = content_module.load(cards).lexicon.codes
    after = codes.concepts["antithrombotic"]
    assert len(after) == len(before) + 1  # 5224 heparin is already listed
    [added] = codes.match_coding({"system": RXNORM, "code": "1361615"})
    assert (added.concept, added.code.status, added.code.usable) == ("antithrombotic", VSAC, True)
    kept = [m.code.status for m in codes.match_coding({"system": RXNORM, "code": "5224"})]
    assert kept == ["V"]  # the curated entry wins


def test_vsac_import_never_makes_an_unverified_code_matchable(cards: Path) -> None:
    imported = expansion((RXNORM, "35780", "ropivacaine"), (RXNORM, "1815", "bupivacaine"))
    write_json(cards / "valuesets" / "imports" / "local_anaesthetic.json", imported)
    codes = content_module.load(cards).lexicon.codes
    assert codes.match_coding({"system": RXNORM, "code": "35780"}) == ()
    statuses = {c.code: c.status for c in codes.concepts["local_anaesthetic"]}
    assert statuses["35780"] == statuses["1815"] == UNVERIFIED


def test_vsac_import_for_unknown_concept_fails_with_file_and_path(cards: Path) -> None:
    write_json(cards / "valuesets" / "imports" / "no_such_concept.json", HEPARIN_IMPORT)
    problems = problems_of(cards)
    assert [(f, p) for f, p, _ in problems] == [("valuesets/imports/no_such_concept.json", "$")]
    assert "unknown concept 'no_such_concept'" in problems[0][2]


def test_invalid_vsac_import_fails_with_file_and_path(cards: Path) -> None:
    broken = expansion((RXNORM, "1361615", "heparin"))
    del broken["expansion"]["contains"][0]["system"]
    write_json(cards / "valuesets" / "imports" / "antithrombotic.json", broken)
    problems = problems_of(cards)
    assert (
        "valuesets/imports/antithrombotic.json",
        "$.expansion.contains[0]",
        "'system' is a required property",
    ) in problems


def test_expansion_used_for_the_tests_is_valid_fhir() -> None:
    ValueSet.model_validate(HEPARIN_IMPORT)


# --------------------------------------------------------------------------- CLI


def test_import_valueset_cli_round_trip(cards: Path, tmp_path: Path) -> None:
    source = tmp_path / "vsac-heparin.json"
    write_json(source, HEPARIN_IMPORT)
    result = run_cli(
        "import-valueset", str(source), "--concept", "antithrombotic", "--dir", str(cards)
    )
    assert result.returncode == 0, result.stderr
    assert "2 codes for concept antithrombotic: 1 new (status VSAC), 1 already present" in (
        result.stdout
    )
    written = cards / "valuesets" / "imports" / "antithrombotic.json"
    assert json.loads(written.read_text()) == HEPARIN_IMPORT
    check = run_cli("check-content", "--dir", str(cards))
    assert check.returncode == 0, check.stderr
    codes = content_module.load(cards).lexicon.codes
    assert [m.code.status for m in codes.match_coding({"system": RXNORM, "code": "1361615"})] == [
        VSAC
    ]
    again = run_cli(
        "import-valueset", str(source), "--concept", "antithrombotic", "--dir", str(cards)
    )
    assert again.returncode == 0, again.stderr
    assert "0 new (status VSAC), 2 already present" in again.stdout
    assert "replaces the previous import" in again.stdout


def test_import_valueset_cli_rejects_unknown_concept_and_bad_files(
    cards: Path, tmp_path: Path
) -> None:
    source = tmp_path / "vsac.json"
    write_json(source, HEPARIN_IMPORT)
    imports = cards / "valuesets" / "imports"
    unknown = run_cli("import-valueset", str(source), "--concept", "../x", "--dir", str(cards))
    assert unknown.returncode == 1
    assert "unknown concept '../x'" in unknown.stderr
    broken = expansion((RXNORM, "1361615", "heparin"))
    broken["expansion"]["contains"][0]["system"] = "rxnorm"  # a short name, not a URI
    write_json(source, broken)
    bad = run_cli(
        "import-valueset", str(source), "--concept", "antithrombotic", "--dir", str(cards)
    )
    assert bad.returncode == 1
    assert f"{source} $.expansion.contains[0].system" in bad.stderr
    not_a_valueset = tmp_path / "bundle.json"
    write_json(not_a_valueset, {"resourceType": "Bundle"})
    wrong = run_cli(
        "import-valueset", str(not_a_valueset), "--concept", "antithrombotic", "--dir", str(cards)
    )
    assert wrong.returncode == 1 and "$.resourceType" in wrong.stderr
    assert not list(imports.glob("*.json"))
