"""The feedback and suppression policy from ``cards/outcomes.yaml``, validated at startup.

Which override reasons mean "plan in place", and which care already under way replaces which
suggestion, are clinical decisions, so they are content: versioned, schema-checked
(``cards/schema/outcomes.schema.json``) and cross-checked against the rest of the content
(reason codes, suggestion keys and code-list concepts must exist), and shown in the rule book.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from service.content import Content
from service.errors import ContentError

FILE = "outcomes.yaml"
SCHEMA = "schema/outcomes.schema.json"


@dataclass(frozen=True)
class ExistingCare:
    """Care that, once under way, replaces some suggestions with one line of content text."""

    id: str
    concept: str
    resource_types: tuple[str, ...]
    replaces: tuple[str, ...]
    line: str


@dataclass(frozen=True)
class OutcomePolicy:
    """The validated content of ``outcomes.yaml``."""

    plan_in_place: Mapping[str, frozenset[str]]
    accepted_is_plan_in_place: bool
    existing_care: tuple[ExistingCare, ...]
    states: Mapping[str, Mapping[str, str]]
    accepted_line: str
    heading: str

    def reasons_for(self, rule: str) -> frozenset[str]:
        """Override reason codes that mean "plan in place" for ``rule``."""
        return self.plan_in_place.get(rule, self.plan_in_place["default"])


def _problems(doc: Any, content: Content) -> list[tuple[str, str, str]]:
    reasons = {code for code, _ in content.wording.override_reasons}
    rules = {card.rule for card in content.wording.cards.values()}
    found: list[tuple[str, str, str]] = []
    for rule, codes in doc["plan_in_place"].items():
        if rule != "default" and rule not in rules:
            found.append((FILE, f"$.plan_in_place.{rule}", f"no card pattern has rule {rule}"))
        for code in codes:
            if code not in reasons:
                found.append(
                    (FILE, f"$.plan_in_place.{rule}", f"{code!r} is not an override reason")
                )
    for i, care in enumerate(doc["existing_care"]):
        if care["concept"] not in content.lexicon.codes.concepts:
            found.append((FILE, f"$.existing_care[{i}].concept", "unknown code-list concept"))
        for key in care["replaces"]:
            if key not in content.suggestions:
                found.append(
                    (FILE, f"$.existing_care[{i}].replaces", f"unknown suggestion {key!r}")
                )
        for rtype in care["resource_types"]:
            if rtype not in doc["states"]:
                found.append((FILE, f"$.existing_care[{i}]", f"no states listed for {rtype}"))
    labels = [s.label for s in content.suggestions.values()]
    if len(set(labels)) != len(labels):
        found.append(("suggestions.yaml", "$", "suggestion labels must be unique (feedback)"))
    return found


def load(content: Content) -> OutcomePolicy:
    """Read ``outcomes.yaml`` from the content directory; :class:`ContentError` when invalid."""
    directory = Path(content.directory)
    try:
        doc = yaml.safe_load((directory / FILE).read_text(encoding="utf-8"))
        schema = json.loads((directory / SCHEMA).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ContentError([(FILE, "$", f"file is missing: {exc.filename}")]) from None
    except yaml.YAMLError as exc:
        raise ContentError([(FILE, "$", f"not valid YAML: {exc}")]) from None
    errors = [
        (FILE, e.json_path, e.message)
        for e in sorted(Draft202012Validator(schema).iter_errors(doc), key=lambda e: e.json_path)
    ]
    if errors:
        raise ContentError(errors)
    problems = _problems(doc, content)
    if problems:
        raise ContentError(problems)
    return OutcomePolicy(
        plan_in_place={rule: frozenset(codes) for rule, codes in doc["plan_in_place"].items()},
        accepted_is_plan_in_place=bool(doc["accepted_is_plan_in_place"]),
        existing_care=tuple(
            ExistingCare(
                id=c["id"],
                concept=c["concept"],
                resource_types=tuple(c["resource_types"]),
                replaces=tuple(c["replaces"]),
                line=" ".join(c["line"].split()),
            )
            for c in doc["existing_care"]
        ),
        states={rtype: dict(words) for rtype, words in doc["states"].items()},
        accepted_line=" ".join(doc["accepted_line"].split()),
        heading=doc["heading"],
    )
