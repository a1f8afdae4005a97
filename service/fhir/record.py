"""A light, read-only view of one patient's FHIR resources (design.md: "record" layer).

Prefetch and fetched data arrive as plain dicts. Full model validation of every resource would
cost more than the whole request budget, so the record only de-duplicates, drops resources that
belong to another patient (a misconfigured prefetch must never leak into this patient's cards)
and indexes by resource type. Everything clinical reads through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Resource = dict[str, Any]

_SUBJECT_FIELDS = ("subject", "patient")


def _patient_reference(resource: Mapping[str, Any]) -> str | None:
    for name in _SUBJECT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict):
            value = ref.get("reference")
            if isinstance(value, str):
                return value
    return None


def _names_patient(reference: str | None, patient_id: str) -> bool:
    if reference is None:
        return True  # nothing says otherwise; the search was scoped to the patient
    tail = reference.rstrip("/").split("/")
    return tail[-1] == patient_id and (len(tail) == 1 or tail[-2] == "Patient")


@dataclass(frozen=True)
class PatientRecord:
    """The patient's resources by type, each resource once; and by ``(type, id)``."""

    patient_id: str
    by_type: Mapping[str, tuple[Resource, ...]]
    dropped_other_patient: int = 0
    by_id: Mapping[tuple[str, str], Resource | None] = field(default_factory=dict)
    """Every ``(type, id)`` seen: the resource kept for it, ``None`` when it was dropped (it
    belongs to another patient). Built by :meth:`from_resources` in the loop that de-duplicates
    anyway, so a look-up by reference (the outcome store's evidence versions) scans nothing."""

    @classmethod
    def from_resources(cls, patient_id: str, resources: Iterable[Any]) -> PatientRecord:
        """Index ``resources``; keeps the first copy of each ``type/id`` and skips non-resources."""
        seen: dict[tuple[str, str], Resource | None] = {}
        grouped: dict[str, list[Resource]] = {}
        verdicts: dict[str | None, bool] = {}
        dropped = 0
        for resource in resources:
            if not isinstance(resource, dict):
                continue
            rtype = resource.get("resourceType")
            if not isinstance(rtype, str):
                continue
            rid = resource.get("id")
            key = None
            if isinstance(rid, str):
                key = (rtype, rid)
                if key in seen:
                    continue
            if rtype == "Patient":
                belongs = rid == patient_id
            else:
                # Nearly every resource names the same patient: judge each reference once.
                reference = _patient_reference(resource)
                known = verdicts.get(reference)
                belongs = known if known is not None else _names_patient(reference, patient_id)
                verdicts[reference] = belongs
            if key is not None:
                seen[key] = resource if belongs else None
            if not belongs:
                dropped += 1
                continue
            grouped.setdefault(rtype, []).append(resource)
        return cls(patient_id, {t: tuple(rs) for t, rs in grouped.items()}, dropped, seen)

    def of_type(self, resource_type: str) -> tuple[Resource, ...]:
        """All resources of one type (empty when none)."""
        return self.by_type.get(resource_type, ())

    def resource(self, resource_type: str, resource_id: str) -> Resource | None:
        """The resource ``resource_type/resource_id``, when the record holds it."""
        return self.by_id.get((resource_type, resource_id))

    @property
    def patient(self) -> Resource | None:
        """The Patient resource, when it was provided."""
        patients = self.of_type("Patient")
        return patients[0] if patients else None

    def size(self) -> int:
        """Number of resources held."""
        return sum(len(rs) for rs in self.by_type.values())
