"""Draft antithrombotic orders judged against the patient's neuraxial procedure (issue 17).

On order-select and order-sign the question is not "was a dose given too soon?" but "when may the
first dose of this draft be given?". Each draft MedicationRequest is read like an order
(``medications.from_draft_order``: ASRA row by SCD or name, dose class from strength and timing);
its proposed first dose is the start of its timing, or ``now`` when the draft has none. The answer
comes from :func:`neuraxial_timing.next_dose`, the same function patient-view uses, against every
index episode; the latest earliest time (or "not while the catheter stays") wins. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.clinical import fields, neuraxial_timing
from service.clinical.antithrombotics import heparin_course
from service.clinical.asra import AsraTable
from service.clinical.findings import Findings
from service.clinical.lexicon import Lexicon
from service.clinical.medications import ANTITHROMBOTIC, from_draft_order
from service.clinical.model import Episode, MedicationEvent
from service.clinical.neuraxial_timing import DoseTiming
from service.clinical.settings import ClinicalSettings
from service.clinical.timing import When


@dataclass(frozen=True)
class DraftVerdict:
    """A draft order whose proposed first dose conflicts with a neuraxial procedure."""

    reference: str
    """``MedicationRequest/<id>`` of the draft (what a ``delete`` suggestion names)."""
    resource: Mapping[str, Any]
    event: MedicationEvent
    episode: Episode
    timing: DoseTiming
    timing_given: bool
    """Whether the draft said when to start; otherwise the first dose was taken to be now."""
    planned_removal: datetime | None = None
    platelets_missing: bool = False
    """A heparin draft after more than 4 days of heparin, with the catheter still to come out and
    no platelet count in the last 24 h (R-03 e, the same course definition as patient-view)."""

    @property
    def conflicts(self) -> bool:
        """Whether the card is about the first dose's timing (not only the platelet count)."""
        return self.timing.conflicts


def first_dose(resource: Mapping[str, Any]) -> When | None:
    """The draft's proposed first dose: its timing's bounds start or first event, if any."""
    found: list[When] = []
    for dosage in fields.objects(resource.get("dosageInstruction")):
        timing = fields.mapping(dosage.get("timing"))
        if timing is None:
            continue
        repeat = fields.mapping(timing.get("repeat"))
        if repeat is not None:
            bounds = fields.mapping(repeat.get("boundsPeriod"))
            if bounds is not None:
                start = fields.first_time(bounds, "start")
                if start is not None:
                    found.append(start)
        events = timing.get("event")
        for value in events if isinstance(events, list) else []:
            at = fields.first_time({"at": value}, "at")
            if at is not None:
                found.append(at)
    return min(found, key=lambda w: w.earliest) if found else None


def planned_removal(
    procedures: Iterable[Mapping[str, Any]], episode: Episode, now: datetime
) -> datetime | None:
    """A documented planned removal: the in-progress catheter's ``performedPeriod.end`` ahead."""
    for resource in procedures:
        if fields.ref_of(resource) != episode.source:
            continue
        if fields.status_code(resource, "status") != "in-progress":
            return None
        end = fields.period_end(resource, "performedPeriod")
        return end.latest if end is not None and end.latest > now else None
    return None


def _latest_inr(findings: Findings, episode: Episode) -> float | None:
    current = [
        f
        for f in findings.of("inr")
        if f.amount is not None and f.when.latest >= episode.punctured.earliest
    ]
    if not current:
        return None
    amount = max(current, key=lambda f: f.when.latest).amount
    return amount


def _platelets_missing(
    episode: Episode,
    at: datetime,
    planned: datetime | None,
    heparin: Sequence[MedicationEvent],
    findings: Findings,
    settings: ClinicalSettings,
) -> bool:
    """R-03 e on an order: more heparin while a catheter is still to be removed, after a course
    of more than 4 days, and no platelet count in the last 24 h."""
    if not neuraxial_timing.catheter_in_at(episode, at, planned):
        return False
    if not heparin_course(heparin, at, settings):
        return False
    recent = at - settings.platelets_before
    return not any(recent <= f.when.latest <= at for f in findings.of("platelets"))


def _worse(a: DraftVerdict | None, b: DraftVerdict) -> DraftVerdict:
    if a is None:
        return b
    if a.conflicts != b.conflicts:
        return a if a.conflicts else b
    if b.timing.earliest is None:
        return b if a.timing.earliest is not None or b.timing.catheter_forbidden else a
    if a.timing.earliest is None:
        return a
    return b if b.timing.earliest > a.timing.earliest else a


def judge(
    drafts: Sequence[Mapping[str, Any]],
    index: Sequence[Episode],
    procedures: Sequence[Mapping[str, Any]],
    findings: Findings,
    lexicon: Lexicon,
    table: AsraTable,
    settings: ClinicalSettings,
    now: datetime,
    medications: Sequence[MedicationEvent] = (),
) -> list[DraftVerdict]:
    """The drafts (in their order) whose proposed first dose is earlier than ASRA allows, or
    that continue a heparin course of more than 4 days with no recent platelet count."""
    out: list[DraftVerdict] = []
    heparin = [
        e
        for e in medications
        if ANTITHROMBOTIC in e.classes
        and (x := table.classify(e)) is not None
        and x.drug.key.startswith("heparin")
    ]
    for resource in drafts:
        proposed = first_dose(resource)
        event = from_draft_order(resource, lexicon, proposed or When.at(now))
        if event is None or ANTITHROMBOTIC not in event.classes:
            continue
        exposure = table.classify(event)
        if exposure is None:
            continue
        at = proposed.earliest if proposed is not None else now
        worst: DraftVerdict | None = None
        for episode in index:
            planned = planned_removal(procedures, episode, now)
            timing = neuraxial_timing.next_dose(
                episode,
                exposure,
                at,
                planned_removal=planned,
                inr=_latest_inr(findings, episode),
                inr_limit=settings.inr_removal_max,
            )
            platelets = exposure.drug.key.startswith("heparin") and _platelets_missing(
                episode, at, planned, heparin, findings, settings
            )
            if not timing.conflicts and not platelets:
                continue
            verdict = DraftVerdict(
                reference=f"MedicationRequest/{resource.get('id')}",
                resource=resource,
                event=event,
                episode=episode,
                timing=timing,
                timing_given=proposed is not None,
                planned_removal=planned,
                platelets_missing=platelets,
            )
            worst = _worse(worst, verdict)
        if worst is not None:
            out.append(worst)
    return out


__all__ = ["DraftVerdict", "first_dose", "judge", "planned_removal"]
