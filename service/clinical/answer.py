"""The answer policy: one clear answer per call (clinical-spec §3.2, safety note 9).

At most one critical card: every critical match is merged into it, the summary names the most
urgent pattern (content order), and the detail lists them all. Warnings are folded into the
critical card when there is one; otherwise one warning card per pattern. Info cards appear only
when nothing more urgent is shown, and at most ``info_cap`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.clinical import model
from service.clinical.model import Episode, Finding, Match


@dataclass(frozen=True)
class CardPlan:
    """What one card must say: its indicator, patterns (most urgent first) and evidence."""

    indicator: str
    patterns: tuple[str, ...]
    matches: tuple[Match, ...]
    folded: tuple[Match, ...] = ()

    @property
    def primary(self) -> Match:
        """The match that names the card."""
        return self.matches[0]

    @property
    def episode(self) -> Episode:
        """The index procedure of the primary match."""
        return self.primary.episode

    def evidence(self) -> tuple[Finding, ...]:
        """Every piece of evidence of the card's and the folded matches, each once, by time."""
        unique: dict[tuple[str, str, str], Finding] = {}
        for match in (*self.matches, *self.folded):
            for finding in match.evidence:
                unique.setdefault((str(finding.source), finding.concept, finding.label), finding)
        return tuple(
            sorted(unique.values(), key=lambda f: (f.when.earliest, str(f.source), f.concept))
        )


def _by_priority(matches: Sequence[Match], order: Sequence[str]) -> list[Match]:
    rank = {pattern: i for i, pattern in enumerate(order)}
    return sorted(
        matches,
        key=lambda m: (
            rank.get(m.pattern, len(rank)),
            -m.episode.punctured.latest.timestamp(),
            m.episode.source,
        ),
    )


def plan(matches: Sequence[Match], priority: Sequence[str], info_cap: int = 2) -> list[CardPlan]:
    """Turn rule matches into the cards to show, in display order."""
    critical = _by_priority([m for m in matches if m.indicator == model.CRITICAL], priority)
    warnings = _by_priority([m for m in matches if m.indicator == model.WARNING], priority)
    infos = _by_priority([m for m in matches if m.indicator == model.INFO], priority)

    if critical:
        patterns = tuple(dict.fromkeys(m.pattern for m in critical))
        return [CardPlan(model.CRITICAL, patterns, tuple(critical), tuple(warnings))]

    cards: list[CardPlan] = []
    for pattern in dict.fromkeys(m.pattern for m in warnings):
        same = tuple(m for m in warnings if m.pattern == pattern)
        cards.append(CardPlan(model.WARNING, (pattern,), same))
    if cards:
        return cards
    for pattern in list(dict.fromkeys(m.pattern for m in infos))[:info_cap]:
        same = tuple(m for m in infos if m.pattern == pattern)
        cards.append(CardPlan(model.INFO, (pattern,), same))
    return cards
