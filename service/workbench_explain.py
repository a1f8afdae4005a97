"""Why each rule did or did not fire, for the card workbench (docs/workbench.md).

A reviewer looking at a card, or at no card, needs the near misses: the weakness that was only
on one side, the fever that came a day too early, the dose that was just outside its ASRA
interval. For every episode this lists every pattern of every rule of the rule set (R-01 to
R-11), and for the whole record the rules that look across episodes (R-04, R-09), each with its
conditions and every value found (``service/workbench_why_*.py``, built from the clinical
core's own selections, ``service/workbench_conditions.py``). Whether a rule *fired* is never
inferred here: it is read from the matches that :func:`service.clinical.rules.evaluate`
returned, so the explanation cannot claim a card the service did not give; the tests check that
the conditions as listed always agree with it.

Nothing here is on the hook path; the workbench's routes call it after the cards were made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from service.clinical.answer import CardPlan
from service.clinical.history import for_episode, scope_for
from service.clinical.model import Episode, Match
from service.content import Content
from service.fhir.record import PatientRecord
from service.workbench_analysis import Analysis
from service.workbench_conditions import Entry, Why, headline, line, when_text
from service.workbench_why_drugs import episode_entries as drug_entries
from service.workbench_why_red_flags import episode_entries as red_flag_entries
from service.workbench_why_red_flags import unattributed_entry
from service.workbench_why_steroids import episode_entries as steroid_entries
from service.workbench_why_steroids import repeat
from service.workbench_why_symptoms import episode_entries as symptom_entries

RECORD_RULES = frozenset({"R-04", "R-09"})
"""Rules that look at the whole record (every episode), listed once rather than per episode."""


def _shown(match_patterns: set[str], plans: Sequence[CardPlan]) -> str:
    for index, plan in enumerate(plans, 1):
        if match_patterns & set(plan.patterns):
            return f"card {index} ({plan.indicator})"
        if match_patterns & {f.pattern for f in plan.folded}:
            return f"folded into card {index} ({plan.indicator})"
    return "not shown (the answer policy keeps one clear answer)"


def _rule_entry(entry: Entry, fired: Iterable[Match], plans: Sequence[CardPlan]) -> dict[str, Any]:
    matched = list(fired)
    out: dict[str, Any] = {
        "rule": entry.rule,
        "pattern": entry.pattern,
        "title": entry.title,
        "statement": entry.statement,
        "fired": bool(matched),
        "conditions": list(entry.conditions),
    }
    if matched:
        out["indicator"] = matched[0].indicator
        out["shown"] = _shown({x.pattern for x in matched}, plans)
        out["evidence"] = list(
            dict.fromkeys(
                [str(f.source) for x in matched for f in x.evidence]
                + [str(m.source) for x in matched for m in x.medications]
            )
        )
    return out


def _entries(
    specs: Iterable[Entry], matches: Sequence[Match], content: Content, plans: Sequence[CardPlan]
) -> list[dict[str, Any]]:
    """Each spec with the matches that fired it, then any fired pattern no spec covers."""
    ordered = sorted(specs, key=lambda e: e.rule)  # stable: each rule's patterns keep their order
    out = [_rule_entry(e, [x for x in matches if x.pattern in e.fired_by], plans) for e in ordered]
    covered = {p for e in ordered for p in e.fired_by}
    for x in matches:
        if x.pattern in covered:
            continue
        covered.add(x.pattern)
        evidence = [line(str(f.source), f"{f.label}, {when_text(f)}", {}) for f in x.evidence]
        used = {"text": "Evidence the rule used", "met": True, "note": "", "found": evidence}
        spec = Entry(x.rule, x.pattern, headline(content, x.pattern), "", (used,))
        out.append(_rule_entry(spec, [x], plans))
    return out


def _episode(ep: Episode, analysis: Analysis, content: Content) -> dict[str, Any]:
    found = for_episode(analysis.findings, ep)
    why = Why(
        ep,
        found,
        scope_for(ep, found, content.settings, analysis.now),
        analysis.meds,
        content,
        analysis.now,
    )
    specs = [*red_flag_entries(why), *drug_entries(why), *symptom_entries(why)]
    specs += steroid_entries(why)
    mine = [x for x in analysis.matches if x.episode == ep and x.rule not in RECORD_RULES]
    return {
        "episode": str(ep.source),
        "label": ep.label,
        "procedureClass": ep.procedure_class,
        "entries": _entries(specs, mine, content, analysis.plans),
    }


def _record(analysis: Analysis, content: Content) -> list[dict[str, Any]]:
    """R-04 and R-09: the rules over every episode of the record."""
    others = [x for x in analysis.matches if x.rule != "R-04"]
    specs = [
        unattributed_entry(analysis.episodes, analysis.findings, others, content, analysis.now),
        *repeat(analysis.episodes, content, analysis.now),
    ]
    theirs = [x for x in analysis.matches if x.rule in RECORD_RULES]
    return _entries(specs, theirs, content, analysis.plans)


def explain(analysis: Analysis, content: Content, record: PatientRecord) -> dict[str, Any]:
    """The workbench's "why" panel: per episode, every rule pattern with its conditions."""
    if not analysis.episodes:
        procedures = [
            {
                "resource": f"Procedure/{p.get('id', '?')}",
                "status": str(p.get("status", "")),
                "text": _label(p),
                "reason": _not_index(p),
            }
            for p in record.of_type("Procedure")
        ]
        return {
            "episodes": [],
            "record": [],
            "summary": (
                "No epidural or other neuraxial procedure was found, so no rule applies and the "
                "service returns no card."
            ),
            "procedures": procedures,
        }
    out = [_episode(ep, analysis, content) for ep in analysis.episodes]
    whole = _record(analysis, content)
    count = sum(1 for e in out for r in e["entries"] if r["fired"])
    count += sum(1 for r in whole if r["fired"])
    summary = f"{len(out)} epidural episode(s); {count} rule pattern(s) fired."
    if not analysis.plans:
        summary += " No card: no rule's conditions were all met."
    return {"episodes": out, "record": whole, "summary": summary}


_EXCLUDING_STATUS = ("entered-in-error", "not-done", "preparation")


def _not_index(resource: dict[str, Any]) -> str:
    """Why a Procedure is not an index epidural (the reasons :mod:`episodes` applies)."""
    status = resource.get("status")
    if status in _EXCLUDING_STATUS:
        return f"its status {status} excludes it"
    return (
        "its code and text name no epidural or other neuraxial procedure (or it is planned, "
        "not done)"
    )


def _label(resource: dict[str, Any]) -> str:
    from service.clinical.fields import label_of

    return label_of(resource.get("code"), "procedure without a code or text")
