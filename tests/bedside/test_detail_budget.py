"""The detail length budget per indicator: schema-validated content, checked on every example.

``epidural-cds check-content`` evaluates each example in ``fhir_examples/`` and fails when a
card's detail is longer than ``rules.yaml`` ``detail_budget`` allows for its indicator.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from service import cli
from service import content as content_module
from service.errors import ContentError
from service.example_check import card_lengths, default_examples

ROOT = Path(__file__).resolve().parents[2]


def _content_with(tmp_path: Path, **budget: object) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(ROOT / "cards", target)
    rules = yaml.safe_load((target / "rules.yaml").read_text())
    rules["detail_budget"].update(budget)
    (target / "rules.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    return target


def test_every_example_card_meets_its_budget() -> None:
    examples = default_examples()
    assert examples is not None
    lengths = card_lengths(content_module.load(), examples)
    assert len({c.example for c in lengths}) >= 20
    assert [c for c in lengths if c.over] == []


def test_check_content_fails_on_a_card_over_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _content_with(tmp_path, critical=400)
    assert cli.main(["check-content", "--dir", str(directory)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "s1-labour-epidural-lmwh-weakness: critical card detail is" in err
    assert "over its budget of 400" in err


def test_check_content_passes_and_reports_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-content"]) == cli.EXIT_OK
    assert "0 over budget" in capsys.readouterr().out


def test_budget_is_schema_validated(tmp_path: Path) -> None:
    directory = _content_with(tmp_path, critical="long")
    with pytest.raises(ContentError) as caught:
        content_module.load(directory)
    assert any(path == "$.detail_budget.critical" for _, path, _ in caught.value.problems)
