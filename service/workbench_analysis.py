"""The clinical core's intermediate results for one record, for the workbench's panels.

:func:`analyse` runs the public steps of :func:`service.engine.evaluate` in the same order with
the same arguments (medications, episodes, findings, rules, answer policy) and keeps what each
step produced, so the timeline and the "why" panel describe exactly the matches behind the cards.
:func:`dose_intervals` measures each anticoagulant dose against its ASRA interval the way
R-03 does: from the puncture, or from the catheter removal once the catheter is out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.clinical import answer, episodes, findings, medications, rules
from service.clinical import model as m
from service.clinical.answer import CardPlan
from service.clinical.findings import Findings
from service.clinical.medications import ANTITHROMBOTIC
from service.clinical.model import Episode, Match, MedicationEvent
from service.clinical.timing import format_delta
from service.content import Content
from service.fhir.record import PatientRecord


@dataclass(frozen=True)
class Analysis:
    """What each step of the evaluation produced for one record at one ``now``."""

    now: datetime
    meds: tuple[MedicationEvent, ...]
    episodes: tuple[Episode, ...]
    findings: Findings
    matches: tuple[Match, ...]
    plans: tuple[CardPlan, ...]


def analyse(record: PatientRecord, content: Content, now: datetime) -> Analysis:
    """The same steps, in the same order, as :func:`service.engine.evaluate`."""
    lexicon, settings = content.lexicon, content.settings
    meds = medications.collect(
        record.of_type("MedicationAdministration"), record.of_type("MedicationRequest"), lexicon
    )
    index = episodes.find(record.of_type("Procedure"), meds, lexicon, settings, now)
    observed = findings.collect(
        record.of_type("Condition"), record.of_type("Observation"), lexicon, settings, now
    )
    if not index:
        return Analysis(now, tuple(meds), (), observed, (), ())
    chart = rules.Chart(index, observed, meds, now, content.asra)
    matches = rules.evaluate(chart, settings)
    plans = answer.plan(matches, content.wording.pattern_order)
    return Analysis(now, tuple(meds), index, observed, tuple(matches), tuple(plans))


def hours(delta: timedelta) -> str:
    """A duration as the cards write it ("1.5 h", "3 d")."""
    return format_delta(delta.total_seconds() / 3600.0)


def dose_intervals(
    episode: Episode, meds: tuple[MedicationEvent, ...], content: Content
) -> list[dict[str, Any]]:
    """Each administered anticoagulant dose near ``episode`` with its ASRA interval.

    ``fromEvent`` is ``removal`` or ``puncture`` (the event the dose follows) or ``before`` (the
    dose came before the puncture); ``conflict`` says whether the gap is shorter than ASRA's.
    """
    out: list[dict[str, Any]] = []
    lookback = episode.punctured.earliest - content.settings.antithrombotic_lookback
    for event in meds:
        if ANTITHROMBOTIC not in event.classes or not event.administered or event.start is None:
            continue
        if event.start.latest < lookback:
            continue
        exposure = content.asra.classify(event)
        if exposure is None:
            continue
        at = event.start.earliest
        interval = exposure.interval
        removed = episode.removed.latest if episode.removed is not None else None
        in_situ = episode.procedure_class == m.CATHETER and removed is None
        if removed is not None and at >= removed:
            name, start, end, needed = "removal", removed, at, interval.after_removal
        elif at >= episode.punctured.latest:
            name, start, end = "puncture", episode.punctured.latest, at
            needed = interval.after_puncture
        else:
            name, start, end, needed = "before", at, episode.punctured.latest, interval.before
        gap = end - start
        conflict = gap < needed
        if in_situ and name == "puncture":
            conflict = not interval.catheter_allowed
        drug = exposure.drug.names[0]
        if name == "before":
            label = f"{drug} {hours(gap)} before the puncture (ASRA: at least {hours(needed)})"
        elif in_situ and name == "puncture":
            allowed = "allowed" if interval.catheter_allowed else "not allowed"
            label = f"{drug} with the catheter in place ({allowed} by ASRA)"
        else:
            label = f"{drug} {hours(gap)} after the {name} (ASRA: wait at least {hours(needed)})"
        out.append(
            {
                "resource": str(event.source),
                "drug": event.name,
                "at": at.isoformat(),
                "fromEvent": name,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "gapHours": round(gap.total_seconds() / 3600.0, 2),
                "requiredHours": round(needed.total_seconds() / 3600.0, 2),
                "conflict": conflict,
                "label": label,
                "doseClass": exposure.dose_class,
            }
        )
    return out
