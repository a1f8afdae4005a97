"""A card's suggestions: each matched pattern's orders as one plan, the plans as alternatives.

CDS Hooks 2.0 has one ``selectionBehavior`` per card, so overlapping orders (MRI thoracic and
lumbar vs MRI lumbar) must never be two buttons that can both be taken: every suggestion is a
complete plan and the card is ``at-most-one``. Only ids that match the FHIR id grammar become
references; nothing is applied automatically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from service.clinical.answer import CardPlan
from service.clinical.medications import ANTITHROMBOTIC
from service.clinical.model import MedicationEvent
from service.content import ActionTemplate, Content, SuggestionTemplate
from service.fhir_ids import valid_id, valid_reference
from service.markdown_text import plain_text

if TYPE_CHECKING:
    from service.render import RenderContext

_REQUESTER_TYPES = ("Practitioner/", "PractitionerRole/")
_REASON_TYPES = ("Condition", "Observation")


def _service_request(
    action: ActionTemplate, ctx: RenderContext, plan: CardPlan, reasons: list[dict[str, str]]
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
    # The imaging region (clinical-spec §3.1) decides which MRI a plan orders: the chosen MRI
    # (recommended first, then its alternatives) replaces the MRIs a pattern's plan lists, so a
    # cervical injection or arm symptoms never get a lumbar-only study.
    chosen = content.imaging.choose(plan)
    mri = content.imaging.mri_keys
    plans: list[tuple[SuggestionTemplate, ...]] = []
    for pattern in plan.patterns:
        keys = content.wording.cards[pattern].suggestions_for(chain)
        if chosen and any(k in mri for k in keys):
            rest = [k for k in keys if k not in mri]
            variants = [[choice, *rest] for choice in chosen]
        else:
            variants = [list(keys)]
        for variant in variants:
            templates = tuple(content.suggestions[k] for k in variant)
            if templates and templates not in plans:
                plans.append(templates)
    return plans


def suggestions(
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


def holds(
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
