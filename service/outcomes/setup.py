"""Building the outcome parts once at startup from the settings, the content and the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from service.config import Settings
from service.content import Content
from service.outcomes import keys, policy
from service.outcomes.policy import OutcomePolicy
from service.outcomes.store import CardStore
from service.outcomes.tracker import OutcomeTracker, Windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcomes:
    """What the hook path and the feedback endpoint share."""

    store: CardStore
    policy: OutcomePolicy
    tracker: OutcomeTracker
    store_user_comments: bool


def windows(settings: Settings) -> Windows:
    """The feedback windows from the settings."""
    return Windows(
        suppression_hours=settings.suppression_window_hours,
        critical_hours=settings.suppression_critical_window_hours,
        accepted_suggestion_hours=settings.accepted_suggestion_hours,
    )


def build(settings: Settings, content: Content, engine: Engine) -> Outcomes:
    """Load the policy (a :class:`ContentError` stops startup) and wire store and tracker."""
    loaded = policy.load(content)
    secret, configured = keys.load_secret(settings.patient_key_secret, settings.data_dir)
    if not configured and engine.dialect.name == "postgresql":
        log.warning(
            "EPIDURAL_CDS_PATIENT_KEY_SECRET is not set: each host keys patients with its own "
            "secret, so suppression does not carry across replicas"
        )
    store = CardStore(engine)
    tracker = OutcomeTracker(store, loaded, content, secret, windows(settings))
    return Outcomes(store, loaded, tracker, settings.store_user_comments)
