"""The workbench's timeline of each epidural episode, as data the page draws as SVG.

A reviewer reads an epidural complication as a sequence: puncture, catheter in and out, the end
of the block, the symptoms and their sides, the anticoagulant doses against their ASRA intervals,
labs and temperatures, and when the rule could first have fired. This module places those events
on one time axis per episode (ISO instants; the browser scales them), each mark naming the FHIR
resource it came from. Labs and temperatures are read from the Observations directly (normal
values too, which the clinical core drops because no rule needs them), using the content's code
lists, so the picture shows what was measured, not only what was abnormal.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from service.clinical import fields
from service.clinical.answer import CardPlan
from service.clinical.model import Episode
from service.content import Content
from service.fhir.record import PatientRecord
from service.workbench_analysis import Analysis, dose_intervals, hours

LAB_CONCEPTS = ("body_temperature", "wbc", "crp", "esr", "inr", "platelets", "glucose", "hba1c")
_OBS_TIMES = ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
_SKIP_FINDINGS = {"inr", "platelets", "glucose", "hba1c"}  # drawn as labs instead
_BEFORE = timedelta(hours=6)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _mark(
    kind: str, at: datetime, label: str, resource: str, lane: str, **extra: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "at": _iso(at),
        "label": label,
        "resource": resource,
        "lane": lane,
        **extra,
    }


def _labs(record: PatientRecord, content: Content) -> list[dict[str, Any]]:
    out = []
    for resource in record.of_type("Observation"):
        if fields.status_code(resource, "status") in ("entered-in-error", "cancelled"):
            continue
        names = {
            match.concept for match in content.lexicon.codes.match_concept(resource.get("code"))
        }
        concept = next((c for c in LAB_CONCEPTS if c in names), None)
        when = fields.first_time(resource, *_OBS_TIMES)
        q = fields.quantity(resource)
        if concept is None or when is None or q is None:
            continue
        label = fields.label_of(resource.get("code"), concept)
        kind = "temperature" if concept == "body_temperature" else "lab"
        out.append(
            _mark(
                kind,
                when.earliest,
                f"{label}: {q[0]:g} {q[1]}",
                str(fields.ref_of(resource)),
                "labs",
            )
        )
    return out


def _short(dose: Mapping[str, Any]) -> str:
    gap = hours(timedelta(hours=dose["gapHours"]))
    needed = hours(timedelta(hours=dose["requiredHours"]))
    if dose["fromEvent"] == "before":
        return f"{gap} before puncture (ASRA ≥ {needed})"
    return f"{dose['fromEvent']} → dose {gap} (ASRA ≥ {needed})"


def fired_at(plan: CardPlan) -> datetime:
    """When the card's rule could first fire: its latest piece of evidence (or dose), else T_ref."""
    moments = [f.when.earliest for f in plan.evidence() if f.when.recorded]
    for match in plan.matches:
        moments += [e.start.earliest for e in match.medications if e.start is not None]
    return max(moments) if moments else plan.episode.reference.latest


def _episode(
    ep: Episode,
    analysis: Analysis,
    labs: list[dict[str, Any]],
    content: Content,
    cards: list[Mapping[str, Any]],
) -> dict[str, Any]:
    source = str(ep.source)
    marks = [_mark("puncture", ep.punctured.earliest, f"Puncture: {ep.label}", source, "procedure")]
    spans = []
    if ep.removed is not None:
        marks.append(_mark("removal", ep.removed.latest, "Catheter removed", source, "procedure"))
        spans.append(
            {
                "kind": "catheter",
                "from": _iso(ep.punctured.earliest),
                "to": _iso(ep.removed.latest),
                "label": "Catheter in place",
                "resource": source,
            }
        )
    elif ep.catheter_in_situ:
        spans.append(
            {
                "kind": "catheter",
                "from": _iso(ep.punctured.earliest),
                "to": _iso(analysis.now),
                "label": "Catheter in place (still)",
                "resource": source,
            }
        )
    if ep.last_local_anaesthetic is not None:
        marks.append(
            _mark(
                "last_la",
                ep.last_local_anaesthetic.latest,
                "Last epidural local anaesthetic",
                source,
                "procedure",
            )
        )
    if ep.block_ends is not None:
        marks.append(
            _mark("block_end", ep.block_ends, "Expected end of the block", source, "procedure")
        )
    opens = ep.punctured.earliest - _BEFORE
    for f in analysis.findings.findings:
        if f.concept in _SKIP_FINDINGS or not f.when.recorded or f.when.earliest < opens:
            continue
        side = f" ({f.laterality})" if f.laterality else ""
        marks.append(
            _mark(
                "finding",
                f.when.earliest,
                f"{f.label}{side}",
                str(f.source),
                "findings",
                laterality=f.laterality or "unknown",
                concept=f.concept,
            )
        )
    intervals = []
    for dose in dose_intervals(ep, analysis.meds, content):
        marks.append(
            _mark(
                "dose", datetime.fromisoformat(dose["at"]), dose["drug"], dose["resource"], "drugs"
            )
        )
        intervals.append(
            {
                "kind": "asra",
                "from": dose["from"],
                "to": dose["to"],
                "requiredTo": _iso(
                    datetime.fromisoformat(dose["from"]) + timedelta(hours=dose["requiredHours"])
                ),
                "label": dose["label"],
                "short": _short(dose),
                "conflict": dose["conflict"],
                "resource": dose["resource"],
            }
        )
    marks += [lab for lab in labs if datetime.fromisoformat(lab["at"]) >= opens]
    for index, plan in enumerate(analysis.plans):
        if plan.episode != ep:
            continue
        summary = str(cards[index].get("summary", "")) if index < len(cards) else plan.patterns[0]
        rules = ", ".join(dict.fromkeys(m.rule for m in plan.matches))
        evidence = ", ".join(dict.fromkeys(str(f.source) for f in plan.evidence())) or source
        marks.append(
            _mark(
                "fired",
                fired_at(plan),
                f"{plan.indicator} card ({rules}) could fire: {summary}",
                evidence,
                "rules",
                indicator=plan.indicator,
            )
        )
    marks.append(_mark("now", analysis.now, "Evaluation time (now)", "", "rules"))
    moments = [datetime.fromisoformat(x["at"]) for x in marks]
    moments += [datetime.fromisoformat(i["requiredTo"]) for i in intervals]
    start = min([*moments, opens])
    return {
        "episode": source,
        "label": ep.label,
        "procedureClass": ep.procedure_class,
        "start": _iso(start),
        "end": _iso(max(moments)),
        "marks": sorted(marks, key=lambda x: datetime.fromisoformat(x["at"])),
        "spans": spans,
        "intervals": intervals,
    }


def timeline(
    analysis: Analysis, record: PatientRecord, content: Content, cards: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One timeline per episode, most recent episode first."""
    labs = _labs(record, content)
    return [_episode(ep, analysis, labs, content, cards) for ep in analysis.episodes]
