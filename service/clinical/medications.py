"""Medication events: epidural local anaesthetics, corticosteroids and antithrombotics.

Administrations carry real dose times and are preferred; orders (MedicationRequest) only say a
drug was intended, so their times are "uncertain" (clinical-spec §3.1). Drugs are recognised by
RxNorm code and, because orders often carry SCD codes or only text, by ingredient name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from service.clinical import fields
from service.clinical.lexicon import Lexicon
from service.clinical.memo import text_memo
from service.clinical.model import MedicationEvent, ResourceRef
from service.clinical.timing import When

LOCAL_ANAESTHETIC = "local_anaesthetic"
CORTICOSTEROID = "corticosteroid"
ANTITHROMBOTIC = "antithrombotic"
WARFARIN = "warfarin"
INSULIN = "insulin"
THROMBOLYTIC = "thrombolytic"
_CLASSES = (LOCAL_ANAESTHETIC, CORTICOSTEROID, ANTITHROMBOTIC, WARFARIN)
_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# "mg/kg" first: a weight-based dose ("1 mg/kg") is not a 1 mg dose.
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*(mg/kg|mg|units?|iu|u)\b", re.IGNORECASE)
_TWICE_DAILY = re.compile(r"\b(bid|b\.i\.d|twice daily|twice a day|q12h|every 12 hours)\b", re.I)

# "stopped" administrations were partly given, so they still count (with their end time).
_EXCLUDED_ADMIN = {"entered-in-error", "not-done"}
_EXCLUDED_ORDER = {"entered-in-error", "cancelled", "draft"}


def _medication_concept(resource: Mapping[str, Any]) -> tuple[Any, str, list[str]]:
    """The medication CodeableConcept (contained Medication resolved), a display name, its texts."""
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
    texts = fields.concept_texts(concept)
    return concept, texts[0] if texts else "medication", texts


def _classes(concept: Any, name: str, texts: list[str], lexicon: Lexicon) -> frozenset[str]:
    found = {m.concept for m in lexicon.codes.match_concept(concept) if m.concept in _CLASSES}
    names = lexicon.text.word_set(" ".join([name, *texts]))
    drug_words = lexicon.drug_words
    for word in names:
        # The drug-name groups are named as the classes they stand for.
        groups = drug_words.get(word)
        if groups:
            found |= groups
    if WARFARIN in names:
        found.add(WARFARIN)
    if WARFARIN in found:
        found.add(ANTITHROMBOTIC)
    if THROMBOLYTIC in found:
        found.add(ANTITHROMBOTIC)
    return frozenset(found)


def _rxnorm_codes(concept: Any) -> tuple[str, ...]:
    cc = fields.mapping(concept)
    if cc is None:
        return ()
    return tuple(
        c["code"]
        for c in fields.objects(cc.get("coding"))
        if c.get("system") == _RXNORM and isinstance(c.get("code"), str)
    )


def _dose_quantity(value: Any) -> tuple[float, str] | None:
    q = fields.mapping(value)
    if q is None or isinstance(q.get("value"), bool) or not isinstance(q.get("value"), int | float):
        return None
    unit = q.get("code") if isinstance(q.get("code"), str) else q.get("unit")
    return float(q["value"]), unit if isinstance(unit, str) else ""


def _read_strength(text: str) -> tuple[float, str] | None:
    match = _STRENGTH.search(text)
    return (float(match.group(1)), match.group(2).lower()) if match else None


def _read_twice_daily(text: str) -> bool:
    return _TWICE_DAILY.search(text) is not None


# Pure functions of the text alone (no content), and each order repeats its dose text.
_strength_from_text = text_memo(_read_strength)
_says_twice_daily = text_memo(_read_twice_daily)


def _per_day(dosages: Iterable[Mapping[str, Any]], text: str) -> float | None:
    for dosage in dosages:
        timing = fields.mapping(dosage.get("timing"))
        repeat = fields.mapping(timing.get("repeat")) if timing else None
        if repeat is None:
            continue
        frequency = repeat.get("frequency", 1)
        period = repeat.get("period", 1)
        if not isinstance(frequency, int | float) or not isinstance(period, int | float):
            continue
        if period <= 0:
            continue
        if repeat.get("periodUnit") == "d":
            return float(frequency) / float(period)
        if repeat.get("periodUnit") == "h":
            return 24.0 / float(period) * float(frequency)
    return 2.0 if _says_twice_daily(text) else None


def _all_text(name: str, texts: list[str], dosages: Iterable[Mapping[str, Any]]) -> str:
    parts = [name, *texts]
    for dosage in dosages:
        parts += fields.concept_texts(dosage.get("route"))
        if isinstance(dosage.get("text"), str):
            parts.append(dosage["text"])
    return " ".join(parts)


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
    if fields.status_code(resource, "status") in _EXCLUDED_ADMIN:
        return None
    concept, name, texts = _medication_concept(resource)
    classes = _classes(concept, name, texts, lexicon)
    if not classes:
        return None
    dosage = fields.mapping(resource.get("dosage"))
    dosages = [dosage] if dosage else []
    text = _all_text(name, texts, dosages)
    start = fields.first_time(resource, "effectiveDateTime", "effectivePeriod")
    end = fields.period_end(resource, "effectivePeriod")
    if end is None and "effectiveDateTime" in resource:
        end = start
    in_progress = fields.status_code(resource, "status") == "in-progress" or (
        "effectivePeriod" in resource and end is None
    )
    return MedicationEvent(
        source=fields.ref_of(resource),
        name=name,
        classes=classes,
        administered=True,
        start=start,
        end=end,
        epidural_route=_epidural_route(dosages, lexicon) or "epidural" in name.lower(),
        in_progress=in_progress,
        codes=_rxnorm_codes(concept),
        dose=(_dose_quantity(dosage.get("dose")) if dosage else None) or _strength_from_text(text),
        per_day=_per_day(dosages, text),
        text=text,
    )


def from_request(resource: Mapping[str, Any], lexicon: Lexicon) -> MedicationEvent | None:
    """A MedicationRequest of interest; its time is the order time (timing uncertain)."""
    if fields.status_code(resource, "status") in _EXCLUDED_ORDER:
        return None
    return _request_event(resource, lexicon, None, authored=True)


def from_draft_order(
    resource: Mapping[str, Any], lexicon: Lexicon, first_dose: When | None
) -> MedicationEvent | None:
    """A draft MedicationRequest (order-select, order-sign) whose first dose is ``first_dose``.

    Drafts are excluded from the record's orders (they are not yet orders), but on the order hooks
    they are the very thing judged, read exactly as an order is (name, codes, strength, timing).
    """
    return _request_event(resource, lexicon, first_dose)


def _request_event(
    resource: Mapping[str, Any], lexicon: Lexicon, start: When | None, *, authored: bool = False
) -> MedicationEvent | None:
    """The event of an order or draft; ``authored``: its time is ``authoredOn`` (read only for
    an order of interest: most orders of a long admission are of no class the rules use)."""
    concept, name, texts = _medication_concept(resource)
    classes = _classes(concept, name, texts, lexicon)
    if not classes:
        return None
    if authored:
        start = fields.first_time(resource, "authoredOn")
    dosages = list(fields.objects(resource.get("dosageInstruction")))
    text = _all_text(name, texts, dosages)
    dose = None
    for dosage in dosages:
        for rate in fields.objects(dosage.get("doseAndRate")):
            dose = dose or _dose_quantity(rate.get("doseQuantity"))
    return MedicationEvent(
        source=fields.ref_of(resource),
        name=name,
        classes=classes,
        administered=False,
        start=start,
        end=None,
        epidural_route=_epidural_route(dosages, lexicon),
        in_progress=fields.status_code(resource, "status") in {"active", "on-hold"},
        codes=_rxnorm_codes(concept),
        dose=dose or _strength_from_text(text),
        per_day=_per_day(dosages, text),
        text=text,
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
