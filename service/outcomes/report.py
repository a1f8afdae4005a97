"""Analytics over the outcome store: per rule and content version, what happened to the cards.

For each ``(rule, content version)``: cards shown, cards held back (suppressed), cards with an
``accepted`` and with an ``overridden`` outcome (by reason code), suggestions accepted, and the
median minutes from a card being issued to its first feedback. Feedback about cards the store
never issued is counted apart (``unknown``). Read-only, no patient data: only the coded columns
are read, never the patient key or a comment.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from service.outcomes.tables import card_feedback, issued_cards


@dataclass
class RuleStats:
    """The numbers of one rule and content version."""

    rule: str
    content_version: str
    shown: int = 0
    suppressed: int = 0
    accepted: int = 0
    overridden: int = 0
    override_reasons: Counter[str] = field(default_factory=Counter)
    suggestions_accepted: int = 0
    minutes_to_feedback: list[float] = field(default_factory=list)

    @property
    def median_minutes(self) -> float | None:
        """Median minutes from issue to first feedback, when any card had feedback."""
        if not self.minutes_to_feedback:
            return None
        return round(float(statistics.median(self.minutes_to_feedback)), 1)

    def as_dict(self) -> dict[str, Any]:
        """The row as plain JSON values."""
        return {
            "rule": self.rule,
            "contentVersion": self.content_version,
            "shown": self.shown,
            "suppressed": self.suppressed,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "overriddenByReason": dict(sorted(self.override_reasons.items())),
            "suggestionsAccepted": self.suggestions_accepted,
            "medianMinutesToFeedback": self.median_minutes,
        }


@dataclass(frozen=True)
class Report:
    """Every rule's numbers since ``since`` (epoch seconds, or ``None`` for all time)."""

    since: float | None
    rows: tuple[RuleStats, ...]
    unknown_feedback: int


NO_REASON = "(no reason)"


def build(engine: Engine, since: float | None = None) -> Report:
    """Aggregate the store; cards issued before ``since`` and their feedback are left out."""
    cards_query = select(
        issued_cards.c.card_uuid,
        issued_cards.c.rule,
        issued_cards.c.content_version,
        issued_cards.c.shown,
        issued_cards.c.issued_at,
    )
    feedback_query = select(
        card_feedback.c.card_uuid,
        card_feedback.c.known,
        card_feedback.c.outcome,
        card_feedback.c.reason_code,
        card_feedback.c.accepted_count,
        card_feedback.c.outcome_at,
    ).order_by(card_feedback.c.outcome_at)
    if since is not None:
        cards_query = cards_query.where(issued_cards.c.issued_at >= since)
        feedback_query = feedback_query.where(card_feedback.c.received_at >= since)
    stats: dict[tuple[str, str], RuleStats] = {}
    card_rows: dict[str, tuple[RuleStats, float]] = {}
    with engine.connect() as connection:
        for card in connection.execute(cards_query):
            key = (card.rule, card.content_version)
            row = stats.setdefault(key, RuleStats(card.rule, card.content_version))
            if card.shown:
                row.shown += 1
            else:
                row.suppressed += 1
            card_rows[card.card_uuid] = (row, card.issued_at)
        feedback_rows = list(connection.execute(feedback_query))
    unknown = 0
    outcomes: defaultdict[str, set[str]] = defaultdict(set)
    first_seen: set[str] = set()
    for item in feedback_rows:
        found = card_rows.get(item.card_uuid)
        if found is None:
            unknown += 1 if not item.known else 0
            continue
        row, issued_at = found
        if item.outcome not in outcomes[item.card_uuid]:
            outcomes[item.card_uuid].add(item.outcome)
            if item.outcome == "accepted":
                row.accepted += 1
            else:
                row.overridden += 1
                row.override_reasons[item.reason_code or NO_REASON] += 1
        row.suggestions_accepted += int(item.accepted_count)
        if item.card_uuid not in first_seen:
            first_seen.add(item.card_uuid)
            row.minutes_to_feedback.append(max(0.0, (item.outcome_at - issued_at) / 60))
    ordered = tuple(stats[k] for k in sorted(stats))
    return Report(since, ordered, unknown)
