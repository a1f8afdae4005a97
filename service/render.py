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
from service.clinical import model
from service.clinical.answer import CardPlan
from service.clinical.medications import ANTITHROMBOTIC
from service.clinical.model import Episode, Finding, MedicationEvent
from service.clinical.timing import When, format_delta, hours_between
from service.content import Content, SuggestionTemplate, for_episode
from service.fhir_ids import valid_id, valid_reference
from service.markdown_text import markdown_text, plain_text

_REQUESTER_TYPES = ("Practitioner/", "PractitionerRole/")
_REASON_TYPES = ("Condition", "Observation")
_LEG_CONCEPTS = ("leg_weakness", "leg_numbness", "leg_heaviness", "leg_pain")
ANTITHROMBOTIC_LOOKBACK_DAYS = 10  # clinical-spec §3.2 R-03 window opens 10 d before puncture
RULE_BOOK_PATH = "/rule-book/"
EXTENSION_KEY = "org.example.epidural-cds.evidence"
"""Card extension listing the FHIR references the card rests on (machine-readable, not shown)."""
_HIDDEN_FACTS = frozenset({"fact_note"})
"""Facts carrying verification remarks: shown on the rule-book page only, never on a card."""


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


def _day(stamp: datetime) -> str:
    # Formatted field by field: strftime costs twice as much, on every time a card shows.
    return f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d}"


def _offset(stamp: datetime) -> str:
    offset = stamp.utcoffset()
    total = int(offset.total_seconds()) // 60 if offset else 0
    hours, minutes = divmod(abs(total), 60)
    return f"{'-' if total < 0 else '+'}{hours:02d}:{minutes:02d}"


def format_time(when: When | None, unknown: str, zone: tzinfo | None = None) -> str:
    """A timestamp in ``zone`` (default: as recorded) with its offset, or a partial date's range.

    One zone per response: the caller passes the facility's zone so that no card shows UTC while
    another shows -05:00. Partial dates are shown as the dates they stand for.
    """
    if when is None:
        return unknown
    if when.partial:
        if not when.recorded:
            return unknown
        return f"{_day(when.earliest)} to {_day(when.latest)}"
    stamp = when.earliest if zone is None else when.earliest.astimezone(zone)
    return f"{_day(stamp)} {stamp.hour:02d}:{stamp.minute:02d} {_offset(stamp)}"


def fill(
    template: str,
    params: Iterable[tuple[str, str]],
    phrases: Mapping[str, str],
    zone: tzinfo | None = None,
) -> str:
    """A content template with a rule's parameters filled in.

    Parameters named ``*_phrase`` carry the key of a content phrase (so words stay in content);
    ``time`` carries an ISO instant and is shown as a clinician-readable time in ``zone``;
    ``drug`` is also offered capitalised as ``drug_title``.
    """
    values: dict[str, str] = {}
    for key, value in params:
        if key.endswith("_phrase"):
            values[key.removesuffix("_phrase")] = phrases.get(value, value)
        elif key == "time":
            values[key] = format_time(When.at(datetime.fromisoformat(value)), value, zone)
        else:
            values[key] = value
    if "drug" in values:
        values["drug_title"] = values["drug"][:1].upper() + values["drug"][1:]
    return template.format_map(values)


def documented(finding: Finding) -> When:
    """When a finding's evidence was documented (clinical-spec §3.5 "documented 5 h ago").

    The clinical core is to expose the documentation time of each finding; until it does, the
    finding's own time (onset or record time) stands for it.
    """
    value = getattr(finding, "documented", None)
    return value if isinstance(value, When) else finding.when


class _Detail:
    """Builds the markdown detail of one card: found, do now, evidence, notes."""

    def __init__(self, content: Content, ctx: RenderContext, chain: tuple[str, ...]) -> None:
        self.content = content
        self.w = content.wording
        self.p = content.wording.phrases
        self.ctx = ctx
        self.chain = chain

    def when(self, value: When | None) -> str:
        return format_time(value, self.p["time_unknown"], self.ctx.zone)

    def ago(self, at: When) -> str:
        hours = hours_between(at.latest, self.ctx.now)
        key = "documented_ago" if hours >= 0 else "documented_ahead"
        return self.p[key].format(delta=format_delta(hours))

    def relative(self, finding_time: When, episode: Episode) -> list[str]:
        if not finding_time.recorded or not episode.time_known:
            return []
        at = finding_time.earliest
        gap = hours_between(episode.punctured.latest, at)
        key = "after_puncture" if gap >= 0 else "before_puncture"
        out = [self.p[key].format(delta=format_delta(gap))]
        if episode.removed is not None and at >= episode.removed.latest:
            delta = format_delta(hours_between(episode.removed.latest, at))
            out.append(self.p["after_removal"].format(delta=delta))
        return out

    def found_line(self, plan: CardPlan, evidence: tuple[Finding, ...]) -> str:
        headline = self.w.cards[plan.patterns[0]].headline
        timed = [f for f in evidence if f.when.recorded and not f.when.partial]
        episode = plan.episode
        if timed:
            latest = max(timed, key=lambda f: documented(f).latest)
            when = [self.ago(documented(latest)), *self.relative(latest.when, episode)]
        elif episode.removed is not None and episode.removed.recorded:
            hours = format_delta(hours_between(episode.removed.latest, self.ctx.now))
            when = [self.p["removal_ago"].format(delta=hours)]
        elif episode.punctured.recorded:
            hours = format_delta(hours_between(episode.punctured.latest, self.ctx.now))
            when = [self.p["puncture_ago"].format(delta=hours)]
        else:
            when = [self.p["time_unknown"]]
        return f"**{self.p['found_heading']}:** {headline} — {'; '.join(when)}."

    def do_now(self, plan: CardPlan, evidence: tuple[Finding, ...]) -> list[str]:
        primary = self.w.cards[plan.patterns[0]]
        out = [f"**{self.p['do_now_heading']}:** {for_episode(primary.do_now, self.chain)}"]
        steps: list[str] = []
        if plan.indicator == model.CRITICAL:
            steps += for_episode(self.w.critical_next_steps, self.chain, ())
        weakness_unknown = plan.indicator == model.CRITICAL and any(
            f.concept == "leg_weakness" and f.laterality is None for f in evidence
        )
        if weakness_unknown:
            steps.append(self.p["laterality_unknown_weakness"])
        return out + [f"- {step}" for step in steps]

    def evidence_line(self, finding: Finding, episode: Episode) -> str:
        label = self.w.finding_labels.get(finding.concept, finding.concept)
        parts = [f"**{label}**"]
        if finding.laterality:
            parts.append(self.w.laterality_labels[finding.laterality])
        elif finding.concept in _LEG_CONCEPTS:
            parts.append(self.w.laterality_labels["unknown"])
        if finding.value:
            parts.append(markdown_text(finding.value, 40))
        if finding.label and finding.label.lower() != label.lower():
            parts.append(f"“{markdown_text(finding.label)}”")
        timing = [self.when(finding.when)]
        if finding.when.recorded and not finding.when.partial:
            timing[0] += f" ({self.ago(documented(finding))})"
        timing += self.relative(finding.when, episode)
        line = f"- {', '.join(parts)} — {'; '.join(timing)}"
        if finding.from_text:
            line += f" ({self.p['from_text']})"
        return line

    def procedure_line(self, episode: Episode) -> str:
        label = self.w.procedure_labels[episode.procedure_class]
        facts = [self.p["puncture"].format(time=self.when(episode.punctured))]
        if episode.removed is not None:
            facts.append(self.p["removed"].format(time=self.when(episode.removed)))
        elif episode.catheter_in_situ:
            facts.append(self.p["in_situ"])
        if (
            episode.last_local_anaesthetic is not None
            and episode.procedure_class == model.CATHETER
            and episode.block_ends is None  # otherwise the block end, derived from it, says it
        ):
            facts.append(
                self.p["last_local_anaesthetic"].format(
                    time=self.when(episode.last_local_anaesthetic)
                )
            )
        if not episode.punctured.recorded:
            pass  # no time, no expected block end to show
        elif episode.block_ends is None:
            facts.append(self.p["infusion_running"])
        elif episode.block_ends <= self.ctx.now:
            ago = format_delta(hours_between(episode.block_ends, self.ctx.now))
            facts.append(
                self.p["block_ends_passed"].format(
                    time=self.when(When.at(episode.block_ends)), delta=ago
                )
            )
        else:
            facts.append(self.p["block_ends"].format(time=self.when(When.at(episode.block_ends))))
        if episode.steroid:
            facts.append(self.p["steroid"].format(name=markdown_text(episode.steroid, 50)))
        text = f" ({self.p['from_text']})" if episode.from_text else ""
        name = markdown_text(episode.label)
        return f"- **{label}**: “{name}”{text} — " + "; ".join(facts)

    def antithrombotic_lines(
        self, episode: Episode, medications: Iterable[MedicationEvent]
    ) -> list[str]:
        lines = []
        opens = episode.punctured.earliest.timestamp() - ANTITHROMBOTIC_LOOKBACK_DAYS * 86400
        relevant = [
            event
            for event in medications
            if ANTITHROMBOTIC in event.classes
            and event.start is not None
            and event.start.latest.timestamp() >= opens
        ]
        # Orders say little about dose timing once administrations are on record.
        given = any(event.administered for event in relevant)
        for event in relevant:
            if event.start is None or (given and not event.administered):
                continue
            if event.administered:
                timing = [self.p["given"].format(time=self.when(event.start))]
                timing += self.relative(event.start, episode)
            else:
                timing = [self.p["ordered"].format(time=self.when(event.start))]
            lines.append(f"- {markdown_text(event.name, 50)} — {'; '.join(timing)}")
        return self.capped(lines, self.w.dose_lines_max)

    def capped(self, lines: list[str], most: int) -> list[str]:
        if len(lines) <= most:
            return lines
        more = self.p["more_lines"].format(count=len(lines) - most)
        return [*lines[:most], f"- {more}"]

    def build(self, plan: CardPlan, medications: Iterable[MedicationEvent]) -> str:
        cards = self.w.cards
        episode = plan.episode
        evidence = plan.evidence()
        out = [self.found_line(plan, evidence), "", *self.do_now(plan, evidence), ""]
        out.append(f"**{self.p['evidence_heading']}**")
        lines = [self.evidence_line(f, episode) for f in evidence]
        out += self.capped(lines, self.w.evidence_lines_max)
        out.append(self.procedure_line(episode))
        if plan.indicator in (model.CRITICAL, model.INFO) or plan.primary.rule == "R-03":
            out += self.antithrombotic_lines(episode, medications)
        out += [
            f"- {fill(self.p[f.key], f.params, self.p, self.ctx.zone)}"
            for f in plan.facts()
            if f.key not in _HIDDEN_FACTS
        ]
        if plan.primary.rule == "R-04":
            out.append(
                "- "
                + self.p["not_attributed"].format(
                    procedure=self.w.procedure_labels[episode.procedure_class].lower(),
                    time=self.when(episode.punctured),
                )
            )
        out.append("")
        headline = cards[plan.patterns[0]].headline
        matched = list(dict.fromkeys(cards[p].headline for p in plan.patterns[1:]))
        matched = [h for h in matched if h != headline]
        if matched:
            out.append(f"**{self.p['also_matched_heading']}:** " + "; ".join(matched) + ".")
        noted = list(dict.fromkeys(cards[m.pattern].headline for m in plan.folded))
        noted = [h for h in noted if h != headline and h not in matched]
        if noted:
            if matched:
                out.append("")
            out.append(f"**{self.p['also_noted_heading']}:** " + "; ".join(noted) + ".")
        if matched or noted:
            out.append("")
        notes = []
        if any(f.from_text for f in evidence) or episode.from_text:
            notes.append(self.w.text_evidence_note)
        partial = (
            any(f.when.partial or not f.time_known for f in evidence) or episode.punctured.partial
        )
        if partial or not episode.time_known:
            notes.append(self.w.partial_time_note)
        if self.ctx.incomplete_data:
            keys = ", ".join(self.ctx.incomplete_data)
            notes.append(self.p["incomplete_data"].format(keys=keys))
        notes.append(self.w.disclaimer)
        out.append("_" + " ".join(notes) + "_")
        return "\n".join(out).strip()


def _service_request(
    action: Any, ctx: RenderContext, plan: CardPlan, reasons: list[dict[str, str]]
) -> dict[str, Any]:
    coding = [{"system": c.system, "code": c.code, "display": c.display} for c in action.coding]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": action.priority,
        "code": {"coding": coding, "text": action.text},
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
    }
    if ctx.encounter_id and valid_id(ctx.encounter_id):
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    if ctx.user_id and ctx.user_id.startswith(_REQUESTER_TYPES) and valid_reference(ctx.user_id):
        resource["requester"] = {"reference": ctx.user_id}
    if reasons:
        resource["reasonReference"] = reasons
    procedure = str(plan.episode.source)
    if plan.episode.source.id != "unidentified" and valid_reference(procedure):
        # R4 restricts reasonReference to Condition/Observation/DiagnosticReport/DocumentReference,
        # so the epidural Procedure that prompted the order is linked as supporting information.
        resource["supportingInfo"] = [{"reference": procedure}]
    return resource


def _reasons(plan: CardPlan) -> list[dict[str, str]]:
    refs = [
        str(f.source)
        for f in plan.evidence()
        if f.source.resource_type in _REASON_TYPES and f.source.id != "unidentified"
    ]
    return [{"reference": ref} for ref in dict.fromkeys(refs) if valid_reference(ref)]


def _plan_templates(
    plan: CardPlan, content: Content, chain: tuple[str, ...]
) -> list[tuple[SuggestionTemplate, ...]]:
    """One suggestion plan per distinct pattern plan, the primary pattern's first."""
    plans: list[tuple[SuggestionTemplate, ...]] = []
    for pattern in plan.patterns:
        keys = content.wording.cards[pattern].suggestions_for(chain)
        templates = tuple(content.suggestions[k] for k in keys)
        if templates and templates not in plans:
            plans.append(templates)
    return plans


def _suggestions(
    plan: CardPlan, content: Content, ctx: RenderContext, chain: tuple[str, ...], holds: list[Any]
) -> list[dict[str, Any]]:
    """The card's suggestions as alternatives (``at-most-one``): each is a complete plan.

    Overlapping orders (MRI thoracic and lumbar vs MRI lumbar) are never two buttons that can
    both be taken: each pattern's orders form one plan, the primary pattern's plan comes first
    and is the recommended one, and holding an anticoagulant is offered as a variant of it
    (a separate, deliberate choice with its thrombotic-risk caveat; never automatic).
    """
    reasons = _reasons(plan)
    out = []
    for index, templates in enumerate(_plan_templates(plan, content, chain)):
        actions = [
            {
                "type": "create",
                "description": action.description,
                "resource": _service_request(action, ctx, plan, reasons),
            }
            for template in templates
            for action in template.actions
        ]
        suggestion: dict[str, Any] = {
            "label": " + ".join(t.label for t in templates),
            "uuid": ctx.new_id(),
            "actions": actions,
        }
        if index == 0 and templates[0].recommended:
            suggestion["isRecommended"] = True
        out.append(suggestion)
        if index == 0 and holds:
            out.append(
                {
                    "label": " + ".join([suggestion["label"], *(h["label"] for h in holds)]),
                    "uuid": ctx.new_id(),
                    "actions": [*actions, *(h["action"] for h in holds)],
                }
            )
    if not out and holds:
        out = [{"label": h["label"], "uuid": ctx.new_id(), "actions": [h["action"]]} for h in holds]
    return out


def _holds(
    ctx: RenderContext, medications: Iterable[MedicationEvent], phrases: Mapping[str, str]
) -> list[dict[str, Any]]:
    """ "Hold pending review" for each active antithrombotic order — an update, never a delete.

    Safety note 3: nothing is stopped automatically, and the description carries the
    thrombotic-risk caveat. Only orders whose full resource is at hand, and whose id passes the
    FHIR id grammar, can be offered.
    """
    out = []
    for event in medications:
        if event.administered or ANTITHROMBOTIC not in event.classes or not event.in_progress:
            continue
        reference = str(event.source)
        order = ctx.orders.get(reference)
        if order is None or order.get("status") != "active" or not valid_reference(reference):
            continue
        # A shallow copy: only top-level members change, and neither the request's order nor
        # the card is modified afterwards, so sharing nested members is safe (and cheaper).
        held = {
            **order,
            "status": "on-hold",
            "statusReason": {"text": phrases["hold_order_reason"]},
        }
        name = plain_text(event.name, 60)
        out.append(
            {
                "label": phrases["hold_order_label"].format(drug=name),
                "action": {
                    "type": "update",
                    "description": phrases["hold_order_description"].format(drug=name),
                    "resource": held,
                },
            }
        )
    return out


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
        "detail": _Detail(content, ctx, chain).build(plan, medications),
        "source": source,
        "overrideReasons": [
            {"system": wording.override_system, "code": code, "display": display}
            for code, display in wording.override_reasons
        ],
    }
    if plan.indicator == model.CRITICAL or plan.primary.rule == "R-03":
        holds = _holds(ctx, medications, wording.phrases)
        suggestions = _suggestions(plan, content, ctx, chain, holds)
        if suggestions:
            card["suggestions"] = suggestions
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
