"""Put an epidural, or a new finding, into a generated chart; find the chart's own events.

Why: PySynthea records an epidural in about a third of births, so its charts alone test few
epidural-and-finding combinations. Placing an epidural at random times, and just before the
chart's own fevers, pain scores, anticoagulant doses and headaches, asks the service about every
such finding as if it followed an epidural (the worst case for false alarms). Adding a new fever,
urinary retention or leg weakness after an epidural asks whether it is still flagged when the
chart already holds older records of the same finding (the misses of issue 12).

Every placed resource uses the shape PySynthea itself writes (a ``completed`` Procedure with SNOMED
18946005 and only ``performedDateTime``), codes taken from the service's verified value sets, and
an id starting with ``bench-`` so the review can tell it from generated data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bench.falsealarm.cut import first_start

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
EPIDURAL = {"system": SNOMED, "code": "18946005", "display": "Epidural anesthesia (procedure)"}
# Codes of the injected findings; each is listed as verified in cards/valuesets/.
FEVER_OBS = {"system": LOINC, "code": "8310-5", "display": "Body temperature"}
RETENTION = {"system": SNOMED, "code": "267064002", "display": "Retention of urine (disorder)"}
WEAKNESS = {"system": SNOMED, "code": "713514005", "display": "Muscle weakness of limb (finding)"}
EVENT_KINDS = ("fever", "pain", "anticoagulant", "headache")
FEVER_CELSIUS = 38.0


def iso(moment: datetime) -> str:
    """A FHIR instant in UTC."""
    return moment.isoformat(timespec="seconds")


def epidural(patient_ref: str, at: datetime, rid: str) -> dict[str, Any]:
    """A labour epidural as PySynthea records it: completed, a start time, no end."""
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": {"coding": [dict(EPIDURAL)]},
        "subject": {"reference": patient_ref},
        "performedDateTime": iso(at),
    }


def fever(patient_ref: str, at: datetime, rid: str, celsius: float = 38.9) -> dict[str, Any]:
    """A body temperature Observation (vital signs, final)."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [dict(FEVER_OBS)]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": iso(at),
        "valueQuantity": {
            "value": celsius,
            "unit": "Cel",
            "system": "http://unitsofmeasure.org",
            "code": "Cel",
        },
    }


def condition(
    patient_ref: str,
    at: datetime,
    rid: str,
    code: Mapping[str, str],
    abated: datetime | None = None,
) -> dict[str, Any]:
    """A confirmed encounter-diagnosis Condition with onset and recorded date ``at``."""
    status = "resolved" if abated is not None else "active"
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
        "code": {"coding": [dict(code)]},
        "subject": {"reference": patient_ref},
        "onsetDateTime": iso(at),
        "recordedDate": iso(at),
    }
    if abated is not None:
        resource["abatementDateTime"] = iso(abated)
    return resource


@dataclass(frozen=True)
class Concepts:
    """The code sets (system, code) and drug names the event finder uses, from the content."""

    temperature: frozenset[tuple[str, str]]
    fever: frozenset[tuple[str, str]]
    pain: frozenset[tuple[str, str]]
    headache: frozenset[tuple[str, str]]
    anticoagulant: frozenset[tuple[str, str]]
    anticoagulant_names: tuple[str, ...]
    retention: frozenset[tuple[str, str]]
    weakness: frozenset[tuple[str, str]]

    @classmethod
    def from_content(cls, content: Any) -> Concepts:
        """Read the verified codes of the service's own concepts."""
        concepts = content.lexicon.codes.concepts

        def codes(*names: str) -> frozenset[tuple[str, str]]:
            return frozenset(
                (c.system, c.code) for n in names for c in concepts.get(n, ()) if c.usable
            )

        names = sorted(
            {
                c.display.lower().split()[0]
                for n in ("antithrombotic", "warfarin")
                for c in concepts.get(n, ())
                if c.usable and c.display
            }
        )
        return cls(
            temperature=codes("body_temperature"),
            fever=codes("fever"),
            pain=codes("pain_score"),
            headache=codes("headache", "headache_postural"),
            anticoagulant=codes("antithrombotic", "warfarin"),
            anticoagulant_names=tuple(n for n in names if len(n) > 4),
            retention=codes("urinary_retention"),
            weakness=codes("leg_weakness", "paraplegia"),
        )


def _codings(resource: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    element = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    return [
        (str(c.get("system")), str(c.get("code")), str(c.get("display") or ""))
        for c in element.get("coding") or []
        if isinstance(c, Mapping)
    ]


def _has(resource: Mapping[str, Any], codes: frozenset[tuple[str, str]]) -> bool:
    return any((system, code) in codes for system, code, _ in _codings(resource))


def _celsius(resource: Mapping[str, Any]) -> float | None:
    quantity = resource.get("valueQuantity") or {}
    value = quantity.get("value")
    if not isinstance(value, int | float):
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "")
    return (value - 32) * 5 / 9 if unit in ("[degF]", "degF", "°F") else float(value)


def event_kind(resource: Mapping[str, Any], concepts: Concepts) -> str | None:
    """Which of :data:`EVENT_KINDS` a resource is, if any."""
    rtype = resource.get("resourceType")
    if rtype == "Observation" and _has(resource, concepts.temperature):
        celsius = _celsius(resource)
        return "fever" if celsius is not None and celsius >= FEVER_CELSIUS else None
    if rtype in ("Observation", "Condition") and _has(resource, concepts.fever):
        return "fever"
    if rtype == "Observation" and _has(resource, concepts.pain):
        return "pain"
    if rtype in ("Observation", "Condition") and _has(resource, concepts.headache):
        return "headache"
    if rtype in ("MedicationRequest", "MedicationAdministration"):
        if _has(resource, concepts.anticoagulant):
            return "anticoagulant"
        text = " ".join(d for _, _, d in _codings(resource)).lower()
        if any(re.search(rf"\b{re.escape(n)}\b", text) for n in concepts.anticoagulant_names):
            return "anticoagulant"
    return None


def event_time(resource: Mapping[str, Any]) -> datetime | None:
    """When the event happened (not when it was recorded)."""
    return first_start(
        resource,
        "effectiveDateTime",
        "effectivePeriod",
        "onsetDateTime",
        "onsetPeriod",
        "recordedDate",
        "authoredOn",
        "issued",
    )


def events(resources: Iterable[Mapping[str, Any]], concepts: Concepts) -> dict[str, list[datetime]]:
    """The chart's own events by kind, each time once, in time order."""
    found: dict[str, set[datetime]] = {kind: set() for kind in EVENT_KINDS}
    for resource in resources:
        kind = event_kind(resource, concepts)
        when = event_time(resource) if kind else None
        if kind and when is not None:
            found[kind].add(when)
    return {kind: sorted(times) for kind, times in found.items()}


def strip_history(
    resources: Iterable[dict[str, Any]],
    codes: frozenset[tuple[str, str]],
    before: datetime,
    *,
    fever_only_hot: bool = False,
) -> list[dict[str, Any]]:
    """``resources`` without any record of ``codes`` dated before ``before`` (the counterfactual
    chart with no older history of the finding); with ``fever_only_hot`` only readings of 38 °C or
    more are removed, so the normal temperatures stay."""
    out = []
    for resource in resources:
        when = event_time(resource)
        if when is not None and when < before and _has(resource, codes):
            if not fever_only_hot:
                continue
            celsius = _celsius(resource)
            if celsius is None or celsius >= FEVER_CELSIUS:
                continue
        out.append(resource)
    return out


def shift(moment: datetime, hours: float) -> datetime:
    """``moment`` plus ``hours``."""
    return moment + timedelta(hours=hours)
