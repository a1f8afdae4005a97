"""Small, defensive accessors for the FHIR fields the clinical core reads.

Prefetch data is untrusted: any field may be missing or of the wrong type. These helpers return
``None`` or empty values instead of raising, so one odd resource cannot break a patient's cards.

A JSON object is tested with ``isinstance(value, dict)``, not ``Mapping``: the data always come
from a JSON decoder, and the abstract-class check cost a measurable share of a hook call because
these helpers run for every field of every resource.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from service.clinical.model import ResourceRef
from service.clinical.timing import When, parse


def ref_of(resource: Mapping[str, Any]) -> ResourceRef:
    """``ResourceRef`` of a resource (id ``"unidentified"`` when it has none)."""
    rid = resource.get("id")
    rtype = str(resource.get("resourceType", "Resource"))
    return ResourceRef(rtype, rid if isinstance(rid, str) else "unidentified")


def mapping(value: Any) -> Mapping[str, Any] | None:
    """``value`` when it is a JSON object, else ``None``."""
    return value if isinstance(value, dict) else None


def objects(value: Any) -> Iterator[Mapping[str, Any]]:
    """The JSON objects of a list-valued field (skipping anything else)."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def concept_texts(concept: Any) -> list[str]:
    """``text`` and every ``coding.display`` of a CodeableConcept."""
    cc = mapping(concept)
    if cc is None:
        return []
    texts = [cc["text"]] if isinstance(cc.get("text"), str) else []
    texts.extend(
        c["display"] for c in objects(cc.get("coding")) if isinstance(c.get("display"), str)
    )
    return texts


def note_texts(resource: Mapping[str, Any]) -> list[str]:
    """Texts of ``note`` (Annotation) entries."""
    return [n["text"] for n in objects(resource.get("note")) if isinstance(n.get("text"), str)]


def label_of(concept: Any, fallback: str) -> str:
    """A human label for a CodeableConcept: its text, else the first display, else ``fallback``."""
    texts = concept_texts(concept)
    return texts[0] if texts else fallback


def status_code(resource: Mapping[str, Any], field: str) -> str | None:
    """A status that may be a plain code (``status``) or a CodeableConcept (``clinicalStatus``)."""
    value = resource.get(field)
    if isinstance(value, str):
        return value
    concept = mapping(value)
    if concept is not None:
        for coding in objects(concept.get("coding")):
            code = coding.get("code")
            if isinstance(code, str):
                return code
    return None


def first_time(resource: Mapping[str, Any], *fields: str) -> When | None:
    """The first parseable time among ``fields``; a ``*Period`` field yields its start."""
    for name in fields:
        value = resource.get(name)
        if name.endswith("Period"):
            period = mapping(value)
            when = parse(period.get("start")) if period else None
        else:
            when = parse(value)
        if when is not None:
            return when
    return None


def period_end(resource: Mapping[str, Any], field: str) -> When | None:
    """End of a Period-valued field."""
    period = mapping(resource.get(field))
    return parse(period.get("end")) if period else None


def quantity(resource: Mapping[str, Any]) -> tuple[float, str] | None:
    """``(value, unit code)`` of ``valueQuantity``; the unit falls back to ``unit``."""
    q = mapping(resource.get("valueQuantity"))
    if q is None or isinstance(q.get("value"), bool) or not isinstance(q.get("value"), int | float):
        return None
    unit = q.get("code") if isinstance(q.get("code"), str) else q.get("unit")
    return float(q["value"]), unit if isinstance(unit, str) else ""


def interpretation_codes(resource: Mapping[str, Any]) -> set[str]:
    """Codes of every ``interpretation`` coding (e.g. ``H``, ``HH``)."""
    return {
        c["code"]
        for cc in objects(resource.get("interpretation"))
        for c in objects(cc.get("coding"))
        if isinstance(c.get("code"), str)
    }
