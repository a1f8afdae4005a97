"""The length budget of card details, checked on the cards of every example patient.

A stat action must not sit screens below the evidence: ``cards/rules.yaml`` ``detail_budget``
gives the most characters of ``detail`` per indicator, and ``epidural-cds check-content`` runs
every example in ``fhir_examples/`` (each ``bundle.json`` at its ``scenario.json`` time) and
reports each card over its budget. The budget is only meaningful for the cards the service
really writes, so it is checked on them rather than estimated from the templates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from service.config import Settings
from service.content import Content


@dataclass(frozen=True)
class CardLength:
    """One example card's detail length against its budget."""

    example: str
    indicator: str
    length: int
    budget: int

    @property
    def over(self) -> bool:
        """Whether the detail is longer than its budget."""
        return self.length > self.budget


def default_examples() -> Path | None:
    """``fhir_examples/`` next to the shipped content (a source checkout), if present."""
    from cards import CONTENT_DIR

    folder = Path(CONTENT_DIR).parent / "fhir_examples"
    return folder if folder.is_dir() else None


def card_lengths(content: Content, examples: Path) -> list[CardLength]:
    """The detail length of every card of every example in ``examples``."""
    from service.cdshooks.handler import HookHandler
    from service.cli import CLI_BASE_URL, request_from_bundle

    handler = HookHandler(content, Settings(profile="development", auth_disabled=True))
    service = content.services[0]
    templates = {spec.key: spec.query for spec in service.prefetch}
    budget = content.wording.detail_budget
    out = []
    for folder in sorted(p for p in examples.iterdir() if (p / "scenario.json").is_file()):
        scenario = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
        bundle = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
        request = request_from_bundle(bundle, scenario["patientId"], templates)
        now = datetime.fromisoformat(scenario["now"].replace("Z", "+00:00"))
        outcome = handler.handle(
            service.id, json.dumps(request).encode(), now=now, base_url=CLI_BASE_URL
        )
        for card in outcome.response["cards"]:
            indicator = card["indicator"]
            out.append(CardLength(folder.name, indicator, len(card["detail"]), budget[indicator]))
    return out
