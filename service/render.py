"""Cards from card plans and content (design.md: "cards" layer).

Everything a clinician reads comes from ``cards/``: summaries, headings, explanations, sources,
suggestion labels and codes. This module only assembles them with the evidence: which resources,
at what time relative to the puncture, the catheter removal and the last local anaesthetic. It
never emits ``null``, ``""``, ``[]`` or ``{}`` (CDS Hooks 2.0 JSON rules): optional members are
left out instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.clinical import model
from service.clinical.answer import CardPlan
from service.clinical.medications import ANTITHROMBOTIC
from service.clinical.model import Episode, Finding, MedicationEvent
from service.clinical.timing import When, format_delta, hours_between
from service.content import ActionTemplate, Content, SuggestionTemplate

_REQUESTER_TYPES = ("Practitioner/", "PractitionerRole/")
_REASON_TYPES = ("Condition", "Observation")
ANTITHROMBOTIC_LOOKBACK_DAYS = 10  # clinical-spec §3.2 R-03 window opens 10 d before puncture


@dataclass(frozen=True)
class RenderContext:
    """Per-call facts the cards need: who the patient and user are, and the clock."""

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


def _day(stamp: datetime) -> str:
    # Formatted field by field: strftime costs twice as much, on every time a card shows.
    return f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d}"


def _zone(stamp: datetime) -> str:
    offset = stamp.utcoffset()
    if not offset:  # naive, or UTC itself
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    hours, minutes = divmod(abs(minutes), 60)
    return f"{'-' if offset.days < 0 else '+'}{hours:02d}:{minutes:02d}"


def format_time(when: When | None, unknown: str) -> str:
    """A timestamp in the record's own offset, or the date range a partial date stands for."""
    if when is None:
        return unknown
    if when.partial:
        if not when.recorded:
            return unknown
        return f"{_day(when.earliest)} to {_day(when.latest)}"
    stamp = when.earliest
    return f"{_day(stamp)} {stamp.hour:02d}:{stamp.minute:02d} {_zone(stamp)}"


def fill(template: str, params: Iterable[tuple[str, str]], phrases: Mapping[str, str]) -> str:
    """A content template with a rule's parameters filled in.

    Parameters named ``*_phrase`` carry the key of a content phrase (so words stay in content);
    ``time`` carries an ISO instant and is shown as a clinician-readable time; ``drug`` is also
    offered capitalised as ``drug_title``.
    """
    values: dict[str, str] = {}
    for key, value in params:
        if key.endswith("_phrase"):
            values[key.removesuffix("_phrase")] = phrases.get(value, value)
        elif key == "time":
            values[key] = format_time(When.at(datetime.fromisoformat(value)), value)
        else:
            values[key] = value
    if "drug" in values:
        values["drug_title"] = values["drug"][:1].upper() + values["drug"][1:]
    return template.format_map(values)


class _Detail:
    """Builds the markdown detail of one card."""

    def __init__(self, content: Content, ctx: RenderContext) -> None:
        self.content = content
        self.w = content.wording
        self.p = content.wording.phrases
        self.ctx = ctx

    def when(self, value: When | None) -> str:
        return format_time(value, self.p["time_unknown"])

    def relative(self, finding_time: When, episode: Episode) -> list[str]:
        if not finding_time.recorded or not episode.time_known:
            return []
        at = finding_time.earliest
        out = []
        gap = hours_between(episode.punctured.latest, at)
        key = "after_puncture" if gap >= 0 else "before_puncture"
        out.append(self.p[key].format(delta=format_delta(gap)))
        if episode.removed is not None and at >= episode.removed.latest:
            delta = format_delta(hours_between(episode.removed.latest, at))
            out.append(self.p["after_removal"].format(delta=delta))
        if (
            episode.procedure_class == model.CATHETER
            and episode.last_local_anaesthetic is not None
            and at >= episode.last_local_anaesthetic.latest
        ):
            delta = format_delta(hours_between(episode.last_local_anaesthetic.latest, at))
            out.append(self.p["after_last_local_anaesthetic"].format(delta=delta))
        return out

    def evidence_line(self, finding: Finding, episode: Episode) -> str:
        label = self.w.finding_labels.get(finding.concept, finding.concept)
        parts = [f"**{label}**"]
        if finding.laterality:
            parts.append(self.w.laterality_labels[finding.laterality])
        elif finding.concept in ("leg_weakness", "leg_numbness", "leg_heaviness", "leg_pain"):
            parts.append(self.w.laterality_labels["unknown"])
        if finding.value:
            parts.append(finding.value)
        if finding.label and finding.label.lower() != label.lower():
            parts.append(f"“{finding.label}”")
        timing = [self.when(finding.when), *self.relative(finding.when, episode)]
        line = f"- {', '.join(parts)} — `{finding.source}`, {'; '.join(timing)}"
        if finding.from_text:
            line += f" ({self.p['from_text']})"
        return line

    def procedure_line(self, episode: Episode) -> str:
        label = self.w.procedure_labels[episode.procedure_class]
        facts = [self.p["puncture"].format(time=self.when(episode.punctured))]
        if episode.removed is not None:
            facts.append(self.p["removed"].format(time=self.when(episode.removed)))
        elif episode.presumed_until is not None:
            until = self.when(When.at(episode.presumed_until))
            facts.append(self.p["removal_not_recorded"].format(time=until))
        elif episode.catheter_in_situ:
            facts.append(self.p["in_situ"])
        if episode.last_local_anaesthetic is not None and episode.procedure_class == model.CATHETER:
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
            facts.append(self.p["steroid"].format(name=episode.steroid))
        text = f" ({self.p['from_text']})" if episode.from_text else ""
        return f"{label}: {episode.label} — `{episode.source}`{text}; " + "; ".join(facts) + "."

    def antithrombotic_lines(
        self, episode: Episode, medications: Iterable[MedicationEvent]
    ) -> list[str]:
        lines = []
        opens = episode.punctured.earliest.timestamp() - ANTITHROMBOTIC_LOOKBACK_DAYS * 86400
        for event in medications:
            if ANTITHROMBOTIC not in event.classes or event.start is None:
                continue
            if event.start.latest.timestamp() < opens:
                continue
            if event.administered:
                timing = [self.p["given"].format(time=self.when(event.start))]
                timing += self.relative(event.start, episode)
            else:
                timing = [self.p["ordered"].format(time=self.when(event.start))]
            lines.append(f"- {event.name} — `{event.source}`, {'; '.join(timing)}")
        return lines

    def build(self, plan: CardPlan, medications: Iterable[MedicationEvent]) -> str:
        cards = self.w.cards
        primary = cards[plan.patterns[0]]
        episode = plan.episode
        out = [f"**{primary.headline}**", ""]
        if len(plan.patterns) > 1:
            out.append(f"{self.p['also_matched_heading']}:")
            out += [f"- {cards[p].headline}" for p in plan.patterns[1:]]
            out.append("")
        folded = list(dict.fromkeys(m.pattern for m in plan.folded))
        if folded:
            out.append(f"{self.p['also_noted_heading']}:")
            out += [f"- {cards[p].headline}" for p in folded]
            out.append("")
        evidence = plan.evidence()
        if evidence:
            out.append(f"**{self.p['evidence_heading']}**")
            out += [self.evidence_line(f, episode) for f in evidence]
            out.append("")
        out.append(f"**{self.p['procedure_heading']}**: {self.procedure_line(episode)}")
        out.append("")
        if plan.primary.rule == "R-04":
            not_attributed = self.p["not_attributed"].format(
                procedure=self.w.procedure_labels[episode.procedure_class].lower(),
                time=self.when(episode.punctured),
            )
            out += [not_attributed, ""]
        if plan.indicator in (model.CRITICAL, model.INFO) or plan.primary.rule == "R-03":
            doses = self.antithrombotic_lines(episode, medications)
            if doses:
                out.append(f"**{self.p['antithrombotic_heading']}**")
                out += doses
                out.append("")
        facts = plan.facts()
        if facts:
            out.append(f"**{self.p['facts_heading']}**")
            out += [f"- {fill(self.p[f.key], f.params, self.p)}" for f in facts]
            out.append("")
        weakness_unknown = (
            any(f.concept == "leg_weakness" and f.laterality is None for f in evidence)
            and plan.indicator == model.CRITICAL
        )
        out.append(f"**{self.p['why_heading']}**")
        lines = list(dict.fromkeys(line for p in plan.patterns for line in cards[p].detail))
        out += [f"- {line}" for line in lines]
        if weakness_unknown:
            out.append(f"- {self.p['laterality_unknown_weakness']}")
        out.append("")
        if plan.indicator == model.CRITICAL:
            out.append(f"**{self.p['next_steps_heading']}**")
            out += [f"- {line}" for line in self.w.critical_actions_text]
            out.append("")
        source_keys = list(dict.fromkeys(k for p in plan.patterns for k in cards[p].sources))
        refs = []
        for key in source_keys:
            source = self.content.sources[key]
            refs.append(f"[{source.label}]({source.url})" if source.url else source.label)
        out.append(f"**{self.p['sources_heading']}**: " + "; ".join(refs))
        out.append("")
        if any(f.from_text for f in evidence) or episode.from_text:
            out.append(f"_{self.w.text_evidence_note}_")
        partial = (
            any(f.when.partial or not f.time_known for f in evidence) or episode.punctured.partial
        )
        if partial or not episode.time_known:
            out.append(f"_{self.w.partial_time_note}_")
        if self.ctx.incomplete_data:
            keys = ", ".join(self.ctx.incomplete_data)
            out.append(f"_{self.p['incomplete_data'].format(keys=keys)}_")
        out.append(f"_{self.w.disclaimer}_")
        return "\n".join(out).strip()


def _service_request(action: ActionTemplate, ctx: RenderContext, plan: CardPlan) -> dict[str, Any]:
    coding = [{"system": c.system, "code": c.code, "display": c.display} for c in action.coding]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": action.priority,
        "code": {"coding": coding, "text": action.text},
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
    }
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    if ctx.user_id and ctx.user_id.startswith(_REQUESTER_TYPES):
        resource["requester"] = {"reference": ctx.user_id}
    reasons = [
        {"reference": str(f.source)}
        for f in plan.evidence()
        if f.source.resource_type in _REASON_TYPES and f.source.id != "unidentified"
    ]
    if reasons:
        resource["reasonReference"] = list({r["reference"]: r for r in reasons}.values())
    if plan.episode.source.id != "unidentified":
        # R4 restricts reasonReference to Condition/Observation/DiagnosticReport/DocumentReference,
        # so the epidural Procedure that prompted the order is linked as supporting information.
        resource["supportingInfo"] = [{"reference": str(plan.episode.source)}]
    return resource


def _suggestion(template: SuggestionTemplate, ctx: RenderContext, plan: CardPlan) -> dict[str, Any]:
    suggestion: dict[str, Any] = {
        "label": template.label,
        "uuid": ctx.new_id(),
        "actions": [
            {
                "type": "create",
                "description": action.description,
                "resource": _service_request(action, ctx, plan),
            }
            for action in template.actions
        ],
    }
    if template.recommended:
        suggestion["isRecommended"] = True
    return suggestion


def render_card(
    plan: CardPlan, content: Content, ctx: RenderContext, medications: Iterable[MedicationEvent]
) -> dict[str, Any]:
    """One CDS Hooks card for one plan."""
    wording = content.wording
    primary = wording.cards[plan.patterns[0]]
    source_keys = [k for p in plan.patterns for k in wording.cards[p].sources]
    first_url = next((content.sources[k].url for k in source_keys if content.sources[k].url), None)
    source: dict[str, Any] = {
        "label": wording.source_label.format(version=content.version),
        "topic": {
            "system": wording.topic_system,
            "code": primary.topic_code,
            "display": primary.topic_display,
        },
    }
    if first_url:
        source["url"] = first_url
    card: dict[str, Any] = {
        "uuid": ctx.new_id(),
        "summary": fill(primary.summary, plan.primary.params, wording.phrases),
        "indicator": plan.indicator,
        "detail": _Detail(content, ctx).build(plan, medications),
        "source": source,
        "overrideReasons": [
            {"system": wording.override_system, "code": code, "display": display}
            for code, display in wording.override_reasons
        ],
    }
    suggestion_keys = content.imaging.suggestion_keys(
        plan, (k for p in plan.patterns for k in wording.cards[p].suggestions)
    )
    suggestions: list[dict[str, Any]] = []
    if plan.indicator == model.CRITICAL or plan.primary.rule == "R-03":
        suggestions += [_suggestion(content.suggestions[k], ctx, plan) for k in suggestion_keys]
        suggestions += _hold_suggestions(ctx, medications, wording.phrases)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    return card


def _hold_suggestions(
    ctx: RenderContext,
    medications: Iterable[MedicationEvent],
    phrases: Mapping[str, str],
) -> list[dict[str, Any]]:
    """ "Hold pending review" for each active antithrombotic order — an update, never a delete.

    Safety note 3: nothing is stopped automatically, and the description carries the
    thrombotic-risk caveat. Only orders whose full resource is at hand can be offered.
    """
    out = []
    for event in medications:
        if event.administered or ANTITHROMBOTIC not in event.classes or not event.in_progress:
            continue
        order = ctx.orders.get(str(event.source))
        if order is None or order.get("status") != "active":
            continue
        # A shallow copy: only top-level members change, and neither the request's order nor
        # the card is modified afterwards, so sharing nested members is safe (and cheaper).
        held = {
            **order,
            "status": "on-hold",
            "statusReason": {"text": phrases["hold_order_reason"]},
        }
        out.append(
            {
                "label": phrases["hold_order_label"].format(drug=event.name),
                "uuid": ctx.new_id(),
                "actions": [
                    {
                        "type": "update",
                        "description": phrases["hold_order_description"].format(drug=event.name),
                        "resource": held,
                    }
                ],
            }
        )
    return out


def render(
    plans: Iterable[CardPlan],
    content: Content,
    ctx: RenderContext,
    medications: Iterable[MedicationEvent],
) -> list[dict[str, Any]]:
    """Cards for every plan, in order."""
    meds = tuple(medications)
    return [render_card(plan, content, ctx, meds) for plan in plans]
