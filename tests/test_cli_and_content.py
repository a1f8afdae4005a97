"""The command line, the content validation and the README's promises.

The CLI runs as a real subprocess (the installed console script's module), so exit codes and
output are what a user sees.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service import content as content_module
from service.config import Settings
from service.errors import ConfigError, ContentError
from tests.support.apps import dev_app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "fhir_examples").iterdir() if (p / "scenario.json").exists())


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_evaluate_bundle_prints_expected_cards(example: Path) -> None:
    scenario = json.loads((example / "scenario.json").read_text())
    result = run_cli(
        "evaluate",
        str(example / "bundle.json"),
        "--patient",
        scenario["patientId"],
        "--now",
        scenario["now"],
        "--summary",
    )
    assert result.returncode == 0, result.stderr
    expected = [f"{c['indicator']}: {c['summary']}" for c in scenario["expected"]["cards"]]
    assert result.stdout.splitlines() == (expected or ["no cards"])


def test_example_request_replays_now(tmp_path: Path) -> None:
    example = ROOT / "fhir_examples" / "s1-labour-epidural-lmwh-weakness"
    request = run_cli("example-request", str(example))
    assert request.returncode == 0, request.stderr
    path = tmp_path / "request.json"
    path.write_text(request.stdout)
    document = json.loads(request.stdout)
    assert document["hook"] == "patient-view" and "procedures" in document["prefetch"]
    result = run_cli("evaluate", str(path), "--summary")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("critical: Possible spinal epidural hematoma")


def test_evaluate_bundle_without_patient_is_usage_error() -> None:
    bundle = EXAMPLES[0] / "bundle.json"
    result = run_cli("evaluate", str(bundle))
    assert result.returncode == 2
    assert "--patient" in result.stderr


def test_evaluate_bundle_for_an_absent_patient_names_the_ids_present(tmp_path: Path) -> None:
    # Issue 12 item 5: no Patient and no resources for the id is an error, not "no cards".
    bundle = EXAMPLES[0] / "bundle.json"
    present = json.loads((EXAMPLES[0] / "scenario.json").read_text(encoding="utf-8"))["patientId"]
    result = run_cli("evaluate", str(bundle), "--patient", "nobody-here", "--summary")
    assert result.returncode == 2
    assert "no cards" not in result.stdout
    assert "'nobody-here'" in result.stderr and repr(present) in result.stderr


def test_evaluate_bundle_with_resources_but_no_patient_resource(tmp_path: Path) -> None:
    # Resources that reference the patient are enough: a prefetch need not carry the Patient.
    bundle = json.loads((EXAMPLES[0] / "bundle.json").read_text(encoding="utf-8"))
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Patient"]
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    patient = json.loads((EXAMPLES[0] / "scenario.json").read_text(encoding="utf-8"))["patientId"]
    result = run_cli("evaluate", str(path), "--patient", patient, "--summary")
    assert result.returncode == 0, result.stderr


def test_evaluate_invalid_request_fails_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"hook": "patient-view", "context": {}}))
    result = run_cli("evaluate", str(path))
    assert result.returncode == 1
    assert '"status": 400' in result.stderr and "hookInstance" in result.stderr


def test_check_content_ok() -> None:
    result = run_cli("check-content")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "UNVERIFIED" in result.stdout


@pytest.fixture
def broken_content(tmp_path: Path) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(ROOT / "cards", target)
    rules = yaml.safe_load((target / "rules.yaml").read_text())
    rules["warning"][1]["summary"] = "x" * 140  # one character too long
    rules["critical"]["patterns"][0]["sources"].append("NO-SUCH-SOURCE")
    (target / "rules.yaml").write_text(yaml.safe_dump(rules))
    settings = yaml.safe_load((target / "settings.yaml").read_text())
    settings["thresholds"]["fever_celsius"] = "hot"
    (target / "settings.yaml").write_text(yaml.safe_dump(settings))
    return target


def test_check_content_names_file_and_path(broken_content: Path) -> None:
    result = run_cli("check-content", "--dir", str(broken_content))
    assert result.returncode == 1
    assert "rules.yaml $.warning[1].summary" in result.stderr
    assert "settings.yaml $.thresholds.fever_celsius" in result.stderr


def test_cross_reference_problems_are_reported(broken_content: Path) -> None:
    rules = yaml.safe_load((broken_content / "rules.yaml").read_text())
    rules["warning"][1]["summary"] = "short enough"
    (broken_content / "rules.yaml").write_text(yaml.safe_dump(rules))
    settings = yaml.safe_load((broken_content / "settings.yaml").read_text())
    settings["thresholds"]["fever_celsius"] = 38.0
    (broken_content / "settings.yaml").write_text(yaml.safe_dump(settings))
    with pytest.raises(ContentError) as caught:
        content_module.load(broken_content)
    assert (
        "rules.yaml",
        "$.critical.patterns[0].sources",
        "unknown source 'NO-SUCH-SOURCE'",
    ) in caught.value.problems


def test_app_refuses_to_start_on_invalid_content(broken_content: Path) -> None:
    with pytest.raises(ContentError):
        dev_app(content_dir=str(broken_content))


def test_unverified_codes_are_never_matched() -> None:
    loaded = content_module.load()
    ropivacaine = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "35780"}
    assert loaded.lexicon.codes.match_coding(ropivacaine) == ()
    lidocaine = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6387"}
    assert [m.concept for m in loaded.lexicon.codes.match_coding(lidocaine)] == [
        "local_anaesthetic"
    ]


def test_settings_from_environment_and_errors() -> None:
    settings = Settings.from_env(
        {
            "EPIDURAL_CDS_FHIR_PAGE_SIZE": "5",
            "EPIDURAL_CDS_CORS_ORIGINS": "https://a.example, https://b.example",
        }
    )
    assert settings.fhir_page_size == 5
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {"EPIDURAL_CDS_FHIR_DEADLINE": "0", "EPIDURAL_CDS_ALLOW_UNAUTHENTICATED_FHIR": "maybe"}
        )
    assert "EPIDURAL_CDS_FHIR_DEADLINE" in str(caught.value)
    assert "EPIDURAL_CDS_ALLOW_UNAUTHENTICATED_FHIR" in str(caught.value)


def test_serve_refuses_bad_configuration() -> None:
    env = {"PATH": "/usr/bin:/bin", "EPIDURAL_CDS_MAX_BODY_BYTES": "lots"}
    result = run_cli("serve", "--port", "1", env=env)
    assert result.returncode == 2
    assert "EPIDURAL_CDS_MAX_BODY_BYTES" in result.stderr


def test_readme_configuration_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, default, help_text in Settings.describe():
        assert f"| `{name}` | `{default}` | {help_text} |" in readme


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
