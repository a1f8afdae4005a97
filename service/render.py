"""Cards from card plans and content (design.md: "cards" layer).

Everything a clinician reads comes from ``cards/``: summaries, headlines, what to do now, labels,
suggestion labels and codes. This module assembles them with the evidence, action first: the
first lines of ``detail`` say what was found, when (relative to now and to the procedure) and
what to do now; a few lines of evidence follow; the rationale, every source and the resource ids
are not in the detail (the rationale and sources are on the rule's rule-book page, linked from
the card; the ids are in the card's ``extension`` and in the suggested orders).

Record text (labels, medication names, values) enters ``detail`` only through
:func:`service.markdown_text.markdown_text`; FHIR ids are used only when they match the FHIR id
grammar; every time is shown in the facility's zone with its offset; and every card passes the
response check (:mod:`service.card_check`) before it is returned. No ``null``, ``""``, ``[]``
or ``{}`` is emitted (CDS Hooks 2.0 JSON rules): optional members are left out instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from service.card_check import check_cards
from service.card_detail import Detail, fill, format_time
from service.card_suggestions import holds, suggestions
from service.clinical import model
from service.clinical.answer import CardPlan
from service.clinical.model import MedicationEvent
from service.content import Content
from service.fhir_ids import valid_reference
from service.markdown_text import plain_text

__all__ = ["EXTENSION_KEY", "RenderContext", "fill", "format_time", "render", "render_card"]

RULE_BOOK_PATH = "/rule-book/"
EXTENSION_KEY = "org.example.epidural-cds.evidence"
"""Card extension listing the FHIR references the card rests on (machine-readable, not shown)."""


@dataclass(frozen=True)
class RenderContext:
    """Per-call facts the cards need: who the patient and user are, the clock and the zone."""

    patient_id: str
    user_id: str | None
    encounter_id: str | None
    now: datetime
    incomplete_data: tuple[str, ...] = ()
    """Prefetch keys whose data could not be obtained in full; the cards say so."""
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    orders: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The patient's MedicationRequests by ``MedicationRequest/id``: a hold suggestion must
    carry the whole updated resource (CDS Hooks ``update`` action)."""
    zone: tzinfo = UTC
    """The facility's time zone: every time on every card of a response is shown in it."""
    base_url: str = ""
    """Absolute base URL of the service (for rule-book links); empty: no rule-book link."""


def render_card(
    plan: CardPlan, content: Content, ctx: RenderContext, medications: Iterable[MedicationEvent]
) -> dict[str, Any]:
    """One CDS Hooks card for one plan."""
    wording = content.wording
    primary = wording.cards[plan.patterns[0]]
    chain = content.episode_types.chain(plan.episode)
    sources = [content.sources[k] for k in primary.sources_for(chain)]
    lead = sources[0]
    source: dict[str, Any] = {
        "label": lead.label,
        "topic": {
            "system": wording.topic_system,
            "code": primary.topic_code,
            "display": primary.topic_display
            + wording.topic_version_suffix.format(version=content.version),
        },
    }
    if lead.url:
        source["url"] = lead.url
    card: dict[str, Any] = {
        "uuid": ctx.new_id(),
        "summary": fill(primary.summary, plan.primary.params, wording.phrases, ctx.zone),
        "indicator": plan.indicator,
        "detail": Detail(content, ctx, chain).build(plan, medications),
        "source": source,
        "overrideReasons": [
            {"system": wording.override_system, "code": code, "display": display}
            for code, display in wording.override_reasons
        ],
    }
    if plan.indicator == model.CRITICAL or plan.primary.rule == "R-03":
        held = holds(ctx, medications, wording.phrases)
        offered = suggestions(plan, content, ctx, chain, held)
        if offered:
            card["suggestions"] = offered
            card["selectionBehavior"] = "at-most-one"
    links = []
    guideline = next((s for s in sources if s.url), None)
    if guideline is not None and guideline.url:
        links.append({"label": plain_text(guideline.label, 120), "url": guideline.url})
    if ctx.base_url:
        links.append(
            {
                "label": wording.phrases["rule_book_link"].format(rule=primary.rule),
                "url": rule_book_url(ctx.base_url, primary.rule),
            }
        )
    if links:
        card["links"] = [{**link, "type": "absolute"} for link in links]
    refs = [str(f.source) for f in plan.evidence()] + [str(plan.episode.source)]
    refs = [
        r for r in dict.fromkeys(refs) if valid_reference(r) and not r.endswith("/unidentified")
    ]
    if refs:
        card["extension"] = {EXTENSION_KEY: refs}
    return card


def rule_book_url(base_url: str, rule: str) -> str:
    """The absolute URL of a rule's rule-book page under ``base_url`` (which may have a path)."""
    return base_url.rstrip("/") + RULE_BOOK_PATH + rule


def render(
    plans: Iterable[CardPlan],
    content: Content,
    ctx: RenderContext,
    medications: Iterable[MedicationEvent],
) -> list[dict[str, Any]]:
    """Cards for every plan, in order, each through the response check."""
    meds = tuple(medications)
    cards = [render_card(plan, content, ctx, meds) for plan in plans]
    prefix = rule_book_url(ctx.base_url, "") if ctx.base_url else ""
    check_cards(cards, content.card_urls, (prefix,))
    return cards
