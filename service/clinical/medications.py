"""Medication events: epidural local anaesthetics, corticosteroids and antithrombotics.

Administrations carry real dose times and are preferred; orders (MedicationRequest) only say a
drug was intended, so their times are "uncertain" (clinical-spec §3.1). Drugs are recognised by
RxNorm code and, because orders often carry SCD codes or only text, by ingredient name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from service.clinical import fields
from service.clinical.lexicon import Lexicon
from service.clinical.model import MedicationEvent, ResourceRef

LOCAL_ANAESTHETIC = "local_anaesthetic"
CORTICOSTEROID = "corticosteroid"
ANTITHROMBOTIC = "antithrombotic"
WARFARIN = "warfarin"
_CLASSES = (LOCAL_ANAESTHETIC, CORTICOSTEROID, ANTITHROMBOTIC, WARFARIN)

# "stopped" administrations were partly given, so they still count (with their end time).
_EXCLUDED_ADMIN = {"entered-in-error", "not-done"}
_EXCLUDED_ORDER = {"entered-in-error", "cancelled", "draft"}


def _medication_concept(resource: Mapping[str, Any]) -> tuple[Any, str]:
    """The medication CodeableConcept (contained Medication resolved) and a display name."""
    concept = resource.get("medicationCodeableConcept")
    reference = fields.mapping(resource.get("medicationReference"))
    if concept is None and reference is not None:
        target = reference.get("reference")
        if isinstance(target, str) and target.startswith("#"):
            for contained in fields.objects(resource.get("contained")):
                if contained.get("id") == target[1:]:
                    concept = contained.get("code")
        if concept is None and isinstance(reference.get("display"), str):
            concept = {"text": reference["display"]}
    return concept, fields.label_of(concept, "medication")


def _classes(concept: Any, name: str, lexicon: Lexicon) -> frozenset[str]:
    found = {m.concept for m in lexicon.codes.match_concept(concept) if m.concept in _CLASSES}
    texts = " ".join([name, *fields.concept_texts(concept)])
    if lexicon.text.mentions_any(texts, lexicon.local_anaesthetic_names):
        found.add(LOCAL_ANAESTHETIC)
    if lexicon.text.mentions_any(texts, lexicon.corticosteroid_names):
        found.add(CORTICOSTEROID)
    if lexicon.text.mentions_any(texts, lexicon.antithrombotic_names):
        found.add(ANTITHROMBOTIC)
    if lexicon.text.mentions_any(texts, (WARFARIN,)):
        found.add(WARFARIN)
    if WARFARIN in found:
        found.add(ANTITHROMBOTIC)
    return frozenset(found)


def _epidural_route(dosages: Iterable[Mapping[str, Any]], lexicon: Lexicon) -> bool:
    for dosage in dosages:
        route = dosage.get("route")
        if lexicon.codes.has(route, "route_epidural"):
            return True
        texts = [*fields.concept_texts(route)]
        if isinstance(dosage.get("text"), str):
            texts.append(dosage["text"])
        if any("epidural" in t.lower() for t in texts):
            return True
    return False


def from_administration(resource: Mapping[str, Any], lexicon: Lexicon) -> MedicationEvent | None:
    """A MedicationAdministration of interest (``None`` when excluded or irrelevant)."""
    if resource.get("status") in _EXCLUDED_ADMIN:
        return None
    concept, name = _medication_concept(resource)
    classes = _classes(concept, name, lexicon)
    if not classes:
        return None
    dosage = fields.mapping(resource.get("dosage"))
    start = fields.first_time(resource, "effectiveDateTime", "effectivePeriod")
    end = fields.period_end(resource, "effectivePeriod")
    if end is None and "effectiveDateTime" in resource:
        end = start
    in_progress = resource.get("status") == "in-progress" or (
        "effectivePeriod" in resource and end is None
    )
    return MedicationEvent(
        source=fields.ref_of(resource),
        name=name,
        classes=classes,
        administered=True,
        start=start,
        end=end,
        epidural_route=_epidural_route([dosage] if dosage else [], lexicon)
        or "epidural" in name.lower(),
        in_progress=in_progress,
    )


def from_request(resource: Mapping[str, Any], lexicon: Lexicon) -> MedicationEvent | None:
    """A MedicationRequest of interest; its time is the order time (timing uncertain)."""
    if resource.get("status") in _EXCLUDED_ORDER:
        return None
    concept, name = _medication_concept(resource)
    classes = _classes(concept, name, lexicon)
    if not classes:
        return None
    authored = fields.first_time(resource, "authoredOn")
    return MedicationEvent(
        source=fields.ref_of(resource),
        name=name,
        classes=classes,
        administered=False,
        start=authored,
        end=None,
        epidural_route=_epidural_route(fields.objects(resource.get("dosageInstruction")), lexicon),
        in_progress=resource.get("status") in {"active", "on-hold"},
    )


def collect(
    administrations: Iterable[Mapping[str, Any]],
    requests: Iterable[Mapping[str, Any]],
    lexicon: Lexicon,
) -> tuple[MedicationEvent, ...]:
    """All relevant medication events, administrations first, in a stable order."""
    events = [e for r in administrations if (e := from_administration(r, lexicon)) is not None]
    events += [e for r in requests if (e := from_request(r, lexicon)) is not None]

    return tuple(sorted(events, key=_order))


_NEVER = datetime.min.replace(tzinfo=UTC)


def _order(event: MedicationEvent) -> tuple[bool, datetime, ResourceRef]:
    return (
        not event.administered,
        event.start.earliest if event.start else _NEVER,
        event.source,
    )
