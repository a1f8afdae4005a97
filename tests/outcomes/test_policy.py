"""cards/outcomes.yaml is content: schema-checked and cross-checked at startup, in the rule book."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from service import content as content_module
from service import rulebook
from service.errors import ContentError
from service.outcomes import policy

SHIPPED = content_module.default_directory()


def _copy(tmp_path: Path, change: dict[str, object]) -> content_module.Content:
    target = tmp_path / "cards"
    shutil.copytree(SHIPPED, target)
    doc = yaml.safe_load((target / "outcomes.yaml").read_text(encoding="utf-8"))
    doc.update(change)
    (target / "outcomes.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return content_module.load(target)


def test_the_shipped_policy_loads() -> None:
    found = policy.load(content_module.load(None))
    assert found.reasons_for("R-01") == {"imaging-arranged", "specialist-involved"}
    assert "assessed-not-concerning" in found.reasons_for("R-05")  # the default list
    assert "record-incorrect" not in found.reasons_for("R-05")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"plan_in_place": {"default": ["no-such-reason"]}}, "is not an override reason"),
        ({"plan_in_place": {"default": [], "R-99": []}}, "no card pattern has rule R-99"),
        ({"accepted_is_plan_in_place": "yes"}, "is not of type 'boolean'"),
        (
            {
                "existing_care": [
                    {
                        "id": "x",
                        "concept": "nope",
                        "resource_types": ["ServiceRequest"],
                        "replaces": ["mri_hematoma"],
                        "line": "l",
                    }
                ]
            },
            "unknown code-list concept",
        ),
    ],
)
def test_an_invalid_policy_is_refused_naming_the_file(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ContentError) as refused:
        policy.load(_copy(tmp_path, change))
    assert "outcomes.yaml" in str(refused.value) and message in str(refused.value)


def test_the_rule_book_shows_the_policy() -> None:
    text = rulebook.render(rulebook.build(None), "markdown")
    section = text[text.index("## Feedback and suppression") :]
    assert "“imaging-arranged”, “specialist-involved”" in section
    assert "A spine MRI is already {state}" in section
    assert "draft: drafted (not yet signed)" in section
