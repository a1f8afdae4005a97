"""The answer policy: one clear answer per call (clinical-spec §3.2, safety note 9).

- At most one critical card: every critical match is merged into it, the summary names the most
  urgent pattern (content order), the detail lists them all, and every warning is folded into it
  (so the R-03 timing facts appear in the critical card). Info cards are suppressed under it.
- Otherwise one warning card per rule; a warning whose evidence is all shown by another warning
  is folded into that one (fever under an atypical headache, for instance).
- Info cards: the catheter reminder (R-07) only when no warning is shown; at most ``info_cap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from service.clinical import model
from service.clinical.model import Episode, Fact, Finding, Match

MONITORING_RULE = "R-07"


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
        """Every piece of evidence of the card's and the folded matches, each once, by time.

        Computed once per plan (the detail, the suggestions, the imaging choice and the outcome
        key all ask); the plan is immutable, so the answer cannot change.
        """
        cached: tuple[Finding, ...] | None = self.__dict__.get("_evidence")
        if cached is None:
            cached = self._collect_evidence()
            object.__setattr__(self, "_evidence", cached)
        return cached

    def _collect_evidence(self) -> tuple[Finding, ...]:
        unique: dict[tuple[str, str, str], Finding] = {}
        for match in (*self.matches, *self.folded):
            for finding in match.evidence:
                unique.setdefault((str(finding.source), finding.concept, finding.label), finding)
        return tuple(
            sorted(unique.values(), key=lambda f: (f.when.earliest, str(f.source), f.concept))
        )

    def facts(self) -> tuple[Fact, ...]:
        """The guideline facts of every match on the card, each once."""
        return tuple(dict.fromkeys(f for m in (*self.matches, *self.folded) for f in m.facts))


def _sorted(matches: Sequence[Match], rank: dict[str, int]) -> list[Match]:
    return sorted(
        matches,
        key=lambda m: (
            rank.get(m.pattern, len(rank)),
            -m.episode.punctured.latest.timestamp(),
            m.episode.source,
        ),
    )


def _by_rule(matches: Sequence[Match], indicator: str) -> list[CardPlan]:
    rules = list(dict.fromkeys(m.rule for m in matches))
    plans = []
    for rule in rules:
        same = tuple(m for m in matches if m.rule == rule)
        patterns = tuple(dict.fromkeys(m.pattern for m in same))
        plans.append(CardPlan(indicator, patterns, same))
    return plans


def _keys(plan: CardPlan) -> set[tuple[str, str]]:
    return {(str(f.source), f.concept) for f in plan.evidence()}


def _fold_contained(plans: list[CardPlan]) -> list[CardPlan]:
    """Fold each plan whose evidence is wholly shown by another plan into that plan."""
    kept = list(plans)
    for plan in plans:
        own = _keys(plan)
        if not own:
            continue
        host = next(
            (p for p in kept if p is not plan and own <= _keys(p) and own != _keys(p)), None
        )
        if host is not None and plan in kept:
            kept[kept.index(host)] = replace(host, folded=(*host.folded, *plan.matches))
            kept.remove(plan)
    return kept


def plan(matches: Sequence[Match], order: Sequence[str], info_cap: int = 2) -> list[CardPlan]:
    """Turn rule matches into the cards to show, in display order.

    ``order`` lists every pattern id, most urgent first (the content's order).
    """
    rank = {pattern: i for i, pattern in enumerate(order)}
    critical = _sorted([m for m in matches if m.indicator == model.CRITICAL], rank)
    warnings = _sorted([m for m in matches if m.indicator == model.WARNING], rank)
    infos = _sorted([m for m in matches if m.indicator == model.INFO], rank)

    if critical:
        patterns = tuple(dict.fromkeys(m.pattern for m in critical))
        return [CardPlan(model.CRITICAL, patterns, tuple(critical), tuple(warnings))]

    cards = _fold_contained(_by_rule(warnings, model.WARNING))
    if cards:
        infos = [m for m in infos if m.rule != MONITORING_RULE]
    cards += _by_rule(infos, model.INFO)[:info_cap]
    return cards
