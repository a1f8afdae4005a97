"""Care already under way: a spine MRI ordered, scheduled or reported, a referral made.

Pure: the record and the content in, facts out. A resource counts only when its coded status is
one the content names (``outcomes.yaml`` ``states``), its code is in the care's code list, and its
time is at or after the card's symptom onset, so an old MRI from before the symptoms never
silences the suggestion of a new one. A resource without a readable time does not count
(keeping a suggestion is the safe side).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.clinical import timing
from service.clinical.answer import CardPlan
from service.clinical.model import Finding
from service.clinical.terminology import CodeIndex
from service.fhir.record import PatientRecord
from service.outcomes.policy import ExistingCare, OutcomePolicy

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# Where each type keeps its code and, most telling first, its time.
_CODES: Mapping[str, str] = {
    "ServiceRequest": "code",
    "DiagnosticReport": "code",
    "ImagingStudy": "procedureCode",
}
_TIMES: Mapping[str, tuple[str, ...]] = {
    "ServiceRequest": ("authoredOn", "occurrenceDateTime", "occurrencePeriod.start"),
    "ImagingStudy": ("started",),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
}


@dataclass(frozen=True)
class UnderWay:
    """One resource showing that a care item is under way (coded facts only)."""

    care: ExistingCare
    resource_type: str
    resource_id: str | None
    """The id when it is a valid FHIR id (so it can be shown), else ``None``."""
    status: str
    at: datetime


def onset(plan: CardPlan, evidence: Sequence[Finding]) -> datetime | None:
    """The card's symptom onset: its earliest timed evidence, else the puncture, else unknown."""
    times = [f.when.earliest for f in evidence if f.when.recorded]
    if times:
        return min(times)
    if plan.episode.punctured.recorded:
        return plan.episode.punctured.earliest
    return None


def _time(resource: Mapping[str, Any], paths: tuple[str, ...]) -> datetime | None:
    for path in paths:
        value: Any = resource
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        when = timing.parse(value)
        if when is not None and when.recorded:
            return when.latest
    return None


def _coded(resource: Mapping[str, Any], rtype: str, concept: str, codes: CodeIndex) -> bool:
    element = resource.get(_CODES[rtype])
    concepts = element if isinstance(element, list) else [element]
    return any(isinstance(c, dict) and codes.has(c, concept) for c in concepts)


def find(
    plan: CardPlan,
    evidence: Sequence[Finding],
    record: PatientRecord,
    policy: OutcomePolicy,
    codes: CodeIndex,
) -> list[UnderWay]:
    """For each care item of the policy, the newest resource showing it under way, if any."""
    if not any(record.of_type(t) for c in policy.existing_care for t in c.resource_types):
        return []
    since = onset(plan, evidence)
    if since is None:
        return []
    found: list[UnderWay] = []
    for care in policy.existing_care:
        best: UnderWay | None = None
        for rtype in care.resource_types:
            states = policy.states.get(rtype, {})
            for resource in record.of_type(rtype):
                status = resource.get("status")
                if not isinstance(status, str) or status not in states:
                    continue
                if not _coded(resource, rtype, care.concept, codes):
                    continue
                at = _time(resource, _TIMES[rtype])
                if at is None or at < since:
                    continue
                rid = resource.get("id")
                shown_id = rid if isinstance(rid, str) and _ID.fullmatch(rid) else None
                if best is None or at > best.at:
                    best = UnderWay(care, rtype, shown_id, status, at)
        if best is not None:
            found.append(best)
    return found
