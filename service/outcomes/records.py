"""What the store is told and what it answers: plain records, no SQL.

Kept apart from :mod:`service.outcomes.store` so the pure suppression logic and the feedback
parser can use them without importing SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass

CARD_SUBJECT = "card:"
SUGGESTION_SUBJECT = "suggestion:"


@dataclass(slots=True)
class IssuedCard:
    """One card the service answered with (``shown``) or held back (suppressed).

    Not frozen, unlike the other records: one is built on every hook call with cards, and a
    frozen dataclass's ``__init__`` costs five times as much (``object.__setattr__`` per
    field). Nothing changes it after it is queued for the writer.
    """

    card_uuid: str
    service_id: str
    rule: str
    pattern: str
    content_version: str
    indicator: str
    fingerprint: str
    patient_key: str
    hook_instance: str
    issued_at: float
    shown: bool
    suggestions: tuple[tuple[str, str], ...] = ()
    """``(suggestion uuid, suggestion kind)`` for each suggestion on the card."""


@dataclass(frozen=True)
class StateRow:
    """One suppression fact: a card fingerprint or a suggestion kind a clinician acted on."""

    subject: str
    indicator: str
    reason: str
    acted_at: float


@dataclass(frozen=True)
class FeedbackReport:
    """One item of a feedback request, normalised (see :mod:`service.outcomes.parse`)."""

    feedback_id: str
    card_uuid: str
    outcome: str
    reason_code: str | None
    reason_system: str | None
    accepted_ids: tuple[str, ...]
    user_comment: str | None
    outcome_at: float


@dataclass(frozen=True)
class FeedbackResult:
    """How one feedback request was stored."""

    received: int
    stored: int
    duplicates: int
    unknown: int
