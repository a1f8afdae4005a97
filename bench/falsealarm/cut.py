"""Cut a lifetime chart to what a clinician opening it at time ``t`` would have seen.

Why: a generated record holds a whole life up to its export date. Evaluated as it is at an
earlier moment, it would show findings from the future (a fever next year "after" an epidural)
and Conditions as resolved that were still active then; both would make the benchmark measure
an impossible chart.

The rules, per resource type (``appear`` is when the resource entered the chart; a resource whose
``appear`` is after ``t`` is removed):

* **Observation**: appear = ``issued`` if present (a result exists once it is released), else the
  start of ``effective[x]``.
* **Procedure**: appear = start of ``performed[x]``. A ``performedPeriod`` ending after ``t`` loses
  its ``end`` and gets ``status: in-progress``.
* **Condition**: appear = ``recordedDate`` if present, else the start of ``onset[x]``. An
  ``abatement[x]`` after ``t`` is removed and ``clinicalStatus`` becomes ``active`` (the condition
  was not yet resolved at ``t``); an abatement at or before ``t`` is kept as written.
* **MedicationRequest**: appear = ``authoredOn``. A ``stopped`` or ``completed`` order whose
  ``authoredOn + dispenseRequest.expectedSupplyDuration`` is after ``t`` was still running at
  ``t``: it becomes ``active``. Without an expected duration the recorded status is kept (the
  record does not say when it changed).
* **MedicationAdministration**, **Encounter** (``period``), **CarePlan**/**CareTeam**
  (``period``): appear = start of the period (or ``effectiveDateTime``); a period ending after
  ``t`` loses its end and the status becomes ``in-progress`` (``active`` for CarePlan/CareTeam).
* **DiagnosticReport** (``issued``, else ``effective[x]``), **Immunization**
  (``occurrenceDateTime``), **DocumentReference** (``date``), **Claim**/**ExplanationOfBenefit**
  (``created``), **SupplyDelivery** (``occurrenceDateTime``), **ImagingStudy** (``started``),
  **Device** (``manufactureDate``), **Provenance** (``recorded``): removed when after ``t``.
* **Patient**: kept; a ``deceasedDateTime`` after ``t`` is removed.
* Any other type, and any resource with no time at all, is kept.

A partial date (``2020``, ``2020-03``) is taken at its first instant; a date or time without a
zone is taken as UTC. ``meta.lastUpdated`` is ignored (generators stamp the export time).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_UNIT_DAYS = {
    "d": 1.0,
    "day": 1.0,
    "days": 1.0,
    "wk": 7.0,
    "week": 7.0,
    "weeks": 7.0,
    "mo": 30.0,
    "month": 30.0,
    "months": 30.0,
    "a": 365.0,
    "year": 365.0,
    "h": 1 / 24,
}


def parse_time(value: Any) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware datetime (its first instant), else None."""
    if not isinstance(value, str) or not value:
        return None
    match = _PARTIAL.match(value)
    if match:
        year, month, day = match.groups()
        return datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def first_start(resource: Mapping[str, Any], *names: str) -> datetime | None:
    """The first of ``names`` that holds a time (a period gives its start), parsed."""
    for name in names:
        value = resource.get(name)
        if isinstance(value, Mapping):
            value = value.get("start")
        moment = parse_time(value)
        if moment is not None:
            return moment
    return None


def _period_end(resource: Mapping[str, Any], name: str) -> datetime | None:
    period = resource.get(name)
    return parse_time(period.get("end")) if isinstance(period, Mapping) else None


_APPEAR: Mapping[str, tuple[str, ...]] = {
    "Observation": ("issued", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "Condition": ("recordedDate", "onsetDateTime", "onsetPeriod"),
    "MedicationRequest": ("authoredOn",),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod"),
    "Encounter": ("period",),
    "CarePlan": ("period", "created"),
    "CareTeam": ("period",),
    "DiagnosticReport": ("issued", "effectiveDateTime", "effectivePeriod"),
    "Immunization": ("occurrenceDateTime",),
    "DocumentReference": ("date",),
    "Claim": ("created",),
    "ExplanationOfBenefit": ("created",),
    "SupplyDelivery": ("occurrenceDateTime",),
    "ImagingStudy": ("started",),
    "Device": ("manufactureDate",),
    "Provenance": ("recorded",),
}
# Types whose period may still be running at t, with the element and the "running" status.
_RUNNING: Mapping[str, tuple[str, str]] = {
    "Procedure": ("performedPeriod", "in-progress"),
    "MedicationAdministration": ("effectivePeriod", "in-progress"),
    "Encounter": ("period", "in-progress"),
    "CarePlan": ("period", "active"),
    "CareTeam": ("period", "active"),
}
_ABATEMENT = (
    "abatementDateTime",
    "abatementPeriod",
    "abatementAge",
    "abatementRange",
    "abatementString",
)


def appear_time(resource: Mapping[str, Any]) -> datetime | None:
    """When ``resource`` entered the chart under the rules above (None: no time, always kept)."""
    return first_start(resource, *_APPEAR.get(str(resource.get("resourceType")), ()))


def _supply_end(order: Mapping[str, Any], authored: datetime) -> datetime | None:
    duration = (order.get("dispenseRequest") or {}).get("expectedSupplyDuration")
    if not isinstance(duration, Mapping) or not isinstance(duration.get("value"), int | float):
        return None
    unit = str(duration.get("code") or duration.get("unit") or "")
    days = _UNIT_DAYS.get(unit)
    return None if days is None else authored + timedelta(days=float(duration["value"]) * days)


def _as_of(resource: dict[str, Any], t: datetime) -> dict[str, Any]:
    """``resource`` as it read at ``t`` (copied only when something changes)."""
    rtype = resource.get("resourceType")
    running = _RUNNING.get(str(rtype))
    if running is not None:
        element, status = running
        end = _period_end(resource, element)
        if end is not None and end > t:
            resource = copy.deepcopy(resource)
            del resource[element]["end"]
            resource["status"] = status
    if rtype == "Condition":
        abated = first_start(resource, "abatementDateTime", "abatementPeriod")
        if abated is not None and abated > t:
            resource = copy.deepcopy(resource)
            for name in _ABATEMENT:
                resource.pop(name, None)
            resource["clinicalStatus"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            }
    elif rtype == "MedicationRequest" and resource.get("status") in ("stopped", "completed"):
        authored = parse_time(resource.get("authoredOn"))
        end = None if authored is None else _supply_end(resource, authored)
        if end is not None and end > t:
            resource = {**resource, "status": "active"}
    elif rtype == "Patient":
        died = parse_time(resource.get("deceasedDateTime"))
        if died is not None and died > t:
            resource = {k: v for k, v in resource.items() if k != "deceasedDateTime"}
    return resource


def chart_at(resources: Iterable[dict[str, Any]], t: datetime) -> list[dict[str, Any]]:
    """The resources that existed at ``t``, each as it read then; the input is not modified."""
    out = []
    for resource in resources:
        appear = appear_time(resource)
        if appear is not None and appear > t:
            continue
        out.append(_as_of(resource, t))
    return out
