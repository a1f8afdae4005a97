"""The hook path's use of the outcome store: suppress, rewrite, record — and never fail a call.

For each call with cards: compute the patient key and each card's evidence fingerprint, read the
patient's suppression state (one query, skipped when no state could change these cards), hold
back a card whose fingerprint a clinician marked "plan in place" within the window for its
indicator, take out suggestions that care under way or an earlier acceptance makes redundant,
and queue every card (shown or held back) for the batch writer (:mod:`service.outcomes.writer`).

Store down: the state read fails, so nothing is held back and no suggestion is dropped for an
earlier acceptance (the card shows as if no feedback existed, which says nothing false), and the
batch writer drops what it cannot write, with a warning; the hook still answers. Care under
way comes from the record itself and works without the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from service.clinical import model
from service.clinical.answer import CardPlan
from service.content import Content
from service.fhir.record import PatientRecord
from service.outcomes import existing, keys
from service.outcomes.policy import OutcomePolicy
from service.outcomes.records import CARD_SUBJECT, SUGGESTION_SUBJECT, IssuedCard, StateRow
from service.outcomes.rewrite import kind_of, rewrite, suggestion_kinds
from service.outcomes.store import CardStore
from service.outcomes.writer import CardWriter

log = logging.getLogger(__name__)
HOUR = 3600.0
_KINDS_CACHED = 256


@dataclass(frozen=True)
class Windows:
    """How long feedback holds: hours; 0 turns a window off."""

    suppression_hours: float
    critical_hours: float
    accepted_suggestion_hours: float

    def for_indicator(self, indicator: str) -> float:
        """The suppression window in seconds for a card of ``indicator``."""
        hours = self.critical_hours if indicator == model.CRITICAL else self.suppression_hours
        return hours * HOUR

    @property
    def longest(self) -> float:
        """The longest window in seconds: older state never matters."""
        return (
            max(self.suppression_hours, self.critical_hours, self.accepted_suggestion_hours) * HOUR
        )


@dataclass(frozen=True)
class Applied:
    """The cards to answer with, and how many were held back."""

    cards: list[dict[str, Any]]
    suppressed: int
    store_ok: bool


class OutcomeTracker:
    """Applies feedback to one service's cards and records what was sent."""

    def __init__(
        self,
        store: CardStore,
        policy: OutcomePolicy,
        content: Content,
        secret: bytes,
        windows: Windows,
    ) -> None:
        """Everything is fixed at startup; only the store is touched per call."""
        self.store = store
        self.policy = policy
        self.content = content
        self.secret = secret
        self.windows = windows
        self.kinds = suggestion_kinds(content)
        self._kinds_seen: dict[tuple[Any, tuple[Any, ...]], str] = {}
        self.writer = CardWriter(store)

    def apply(
        self,
        service_id: str,
        hook_instance: str,
        record: PatientRecord,
        pairs: Sequence[tuple[CardPlan, dict[str, Any]]],
        now: float | None = None,
        zone: tzinfo | None = None,
    ) -> Applied:
        """The cards of one call after feedback; touches the store only when there are cards.

        ``zone`` is the facility's time zone, in which the lines added to a card give times (one
        zone per response, as the renderer does).
        """
        if not pairs:
            return Applied([], 0, True)
        at = time.time() if now is None else now
        patient = keys.patient_key(self.secret, record.patient_id)
        evidence = [plan.evidence() for plan, _ in pairs]
        prints = [
            keys.fingerprint(plan, found, record)
            for (plan, _), found in zip(pairs, evidence, strict=True)
        ]
        state, store_ok = self._state(patient, service_id, at, pairs)
        accepted = self._accepted(state, at)
        out: list[dict[str, Any]] = []
        issued: list[IssuedCard] = []
        suppressed = 0
        for (plan, card), print_, found in zip(pairs, prints, evidence, strict=True):
            hold = self._held(state.get(CARD_SUBJECT + print_), plan.indicator, at)
            if not hold:
                under_way = existing.find(
                    plan, found, record, self.policy, self.content.lexicon.codes
                )
                card = rewrite(
                    card,
                    under_way=under_way,
                    accepted=accepted,
                    kinds=self.kinds,
                    content=self.content,
                    policy=self.policy,
                    zone=zone,
                )
                out.append(card)
            else:
                suppressed += 1
            issued.append(
                self._issued(service_id, hook_instance, patient, plan, card, print_, at, not hold)
            )
        self.writer.put(issued)
        return Applied(out, suppressed, store_ok)

    def _state(
        self,
        patient: str,
        service_id: str,
        at: float,
        pairs: Sequence[tuple[CardPlan, dict[str, Any]]],
    ) -> tuple[dict[str, StateRow], bool]:
        if not self._state_matters(pairs):
            return {}, True
        try:
            rows = self.store.state_for(patient, service_id, at - self.windows.longest)
        except SQLAlchemyError as exc:
            log.warning("suppression state unavailable (%s); every card shows", type(exc).__name__)
            return {}, False
        return {row.subject: row for row in rows}, True

    def _state_matters(self, pairs: Sequence[tuple[CardPlan, dict[str, Any]]]) -> bool:
        """Whether any state could change these cards: a card that a window could hold back,
        or a suggestion an earlier acceptance could take out. Otherwise the read is skipped
        (e.g. a critical card without suggestions while critical cards are never held)."""
        windows = self.windows
        if any(windows.for_indicator(plan.indicator) > 0 for plan, _ in pairs):
            return True
        return windows.accepted_suggestion_hours > 0 and any(
            card.get("suggestions") for _, card in pairs
        )

    def _accepted(self, state: Mapping[str, StateRow], at: float) -> dict[str, float]:
        window = self.windows.accepted_suggestion_hours * HOUR
        return {
            subject.removeprefix(SUGGESTION_SUBJECT): row.acted_at
            for subject, row in state.items()
            if subject.startswith(SUGGESTION_SUBJECT) and window > 0 and row.acted_at + window >= at
        }

    def _held(self, row: StateRow | None, indicator: str, at: float) -> bool:
        if row is None or row.indicator != indicator:
            return False
        window = self.windows.for_indicator(indicator)
        return window > 0 and row.acted_at + window >= at

    def _issued(
        self,
        service_id: str,
        hook_instance: str,
        patient: str,
        plan: CardPlan,
        card: Mapping[str, Any],
        fingerprint: str,
        at: float,
        shown: bool,
    ) -> IssuedCard:
        return IssuedCard(
            card_uuid=str(card["uuid"]),
            service_id=service_id,
            rule=plan.primary.rule,
            pattern=plan.patterns[0],
            content_version=self.content.version,
            indicator=plan.indicator,
            fingerprint=fingerprint,
            patient_key=patient,
            hook_instance=hook_instance,
            issued_at=at,
            shown=shown,
            suggestions=tuple(
                (str(s["uuid"]), self._kind(s)) for s in card.get("suggestions", ())
            ),
        )

    def _kind(self, suggestion: Mapping[str, Any]) -> str:
        """:func:`kind_of`, remembered per label and action types, which are all it reads.

        Suggestions are rendered from a fixed set of content templates, so the cache stays
        small; it is bounded anyway.
        """
        actions = suggestion.get("actions") or ()
        try:
            key = (
                suggestion.get("label"),
                tuple(a.get("type") if isinstance(a, dict) else None for a in actions),
            )
            found = self._kinds_seen.get(key)
        except TypeError:  # an unhashable label or type: not one of ours, work it out
            return kind_of(suggestion, self.kinds, self.content)
        if found is None:
            found = kind_of(suggestion, self.kinds, self.content)
            if len(self._kinds_seen) >= _KINDS_CACHED:
                self._kinds_seen.clear()
            self._kinds_seen[key] = found
        return found
