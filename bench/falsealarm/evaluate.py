"""Open a chart at a time: the service's own hook path, and which rule each card came from.

Why the hook path: the benchmark must measure what an EHR would get, so each opening builds a
patient-view request with ``service.cli.request_from_bundle`` and the service's own prefetch
templates (as ``epidural-cds evaluate`` does) and runs ``HookHandler.handle`` on its JSON body.

Cards do not carry a rule id, so each card is attributed to its card pattern (and the pattern's
rule) by matching its summary against the pattern summaries of ``cards/rules.yaml``, placeholders
read as wildcards. Patterns sharing one summary (the two hematoma patterns) are reported
together; a summary that matches no pattern is reported as ``unmatched`` rather than guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PREFETCH_TYPES = frozenset(
    {
        "Patient",
        "Procedure",
        "Condition",
        "Observation",
        "MedicationRequest",
        "MedicationAdministration",
    }
)


@dataclass(frozen=True)
class Card:
    """One card as the benchmark keeps it."""

    indicator: str
    summary: str
    pattern: str
    rule: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        """JSON form."""
        return {
            "indicator": self.indicator,
            "summary": self.summary,
            "pattern": self.pattern,
            "rule": self.rule,
            "detail": self.detail,
        }


def _summary_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("^" + ".+?".join(re.escape(p) for p in parts) + "$", re.DOTALL)


class Evaluator:
    """The service's handler and content, loaded once, and a card classifier built from it."""

    def __init__(self) -> None:
        from service import content as content_module
        from service.cdshooks.handler import HookHandler
        from service.config import Settings

        self.content = content_module.load(None)
        self.handler = HookHandler(self.content, Settings())
        service = self.content.services[0]
        self.service_id = service.id
        self.templates = {spec.key: spec.query for spec in service.prefetch}
        self.version = self.content.version
        self._patterns = [
            (pid, text.rule, _summary_regex(text.summary))
            for pid, text in self.content.wording.cards.items()
        ]

    def classify(self, summary: str) -> tuple[str, str]:
        """(pattern ids joined by ``/``, rule) of a card summary."""
        hits = [(pid, rule) for pid, rule, rx in self._patterns if rx.match(summary)]
        if not hits:
            return "unmatched", "?"
        return "/".join(p for p, _ in hits), "/".join(sorted({r for _, r in hits}))

    def open(
        self, resources: Iterable[Mapping[str, Any]], patient_id: str, now: datetime
    ) -> list[Card]:
        """The cards of one chart opening at ``now``."""
        from service.cli import request_from_bundle

        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": r} for r in resources if r.get("resourceType") in PREFETCH_TYPES
            ],
        }
        request = request_from_bundle(bundle, patient_id, self.templates)
        outcome = self.handler.handle(self.service_id, json.dumps(request).encode(), now=now)
        cards = []
        for card in outcome.response["cards"]:
            pattern, rule = self.classify(card["summary"])
            cards.append(Card(card["indicator"], card["summary"], pattern, rule, card["detail"]))
        return cards
