"""Why each rule did or did not fire, for the card workbench (docs/workbench.md).

A reviewer looking at a card, or at no card, needs the near misses: the weakness that was only
on one side, the fever that came a day too early, the dose that was just outside its ASRA
interval. This module reruns the clinical core's public steps exactly as
:func:`service.engine.evaluate` does (medications, episodes, findings, rules, answer policy) and,
for every episode and rule pattern, lists the rule's conditions with every value found and
whether each one passed. Whether a rule *fired* is never inferred here: it is read from the
matches that :func:`service.clinical.rules.evaluate` returned, so the explanation cannot claim a
card the service did not give. The condition lists restate the rules' own windows with the same
:class:`~service.clinical.scope.Scope` predicates and the content's settings.

Nothing here is on the hook path; the workbench's routes call it after the cards were made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from service.clinical import model as m
from service.clinical import rules
from service.clinical.answer import CardPlan
from service.clinical.model import Episode, Match
from service.clinical.settings import ClinicalSettings
from service.content import Content
from service.fhir.record import PatientRecord
from service.workbench_analysis import Analysis, dose_intervals
from service.workbench_conditions import WINDOWED, hours_text, plain, when_text, window


def _antithrombotic(ep: Episode, analysis: Analysis, content: Content) -> list[dict[str, Any]]:
    """One condition per antithrombotic dose: its gap to the puncture or removal vs ASRA."""
    out = []
    for item in dose_intervals(ep, analysis.meds, content):
        out.append(
            {
                "text": item["label"],
                "met": bool(item["conflict"]),
                "note": "inside the ASRA interval" if item["conflict"] else "outside it",
                "found": [
                    {
                        "resource": item["resource"],
                        "text": item["drug"],
                        "checks": {},
                        "passed": bool(item["conflict"]),
                    }
                ],
            }
        )
    if not out:
        out.append(
            plain(
                "An anticoagulant or antiplatelet dose around the epidural", False, "none recorded"
            )
        )
    return out


def _monitoring(ep: Episode, settings: ClinicalSettings, now: datetime) -> list[dict[str, Any]]:
    if ep.procedure_class != m.CATHETER:
        return [plain("The procedure is an epidural catheter", False, ep.procedure_class)]
    if ep.catheter_in_situ:
        return [plain("The catheter is in place", True)]
    if ep.removed is None:
        return [plain("The catheter is in place or was removed recently", False)]
    ago = now - ep.removed.latest
    window = settings.monitoring_after_removal
    text = f"The catheter was removed less than {hours_text(window)} ago (48 h with warfarin)"
    return [plain(text, ago <= window, f"removed {hours_text(ago)} ago")]


def _statement(function: Callable[..., Any]) -> str:
    """The "When ... then ..." paragraph of a rule's docstring."""
    doc = function.__doc__ or ""
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
    return next(
        (p for p in paragraphs if p.startswith("When")), paragraphs[0] if paragraphs else ""
    )


_STATEMENTS: dict[str, Callable[..., Any]] = {
    "R-01": rules.red_flags,
    "R-02": rules.possible_abscess,
    "R-05": rules.persisting_symptoms,
    "R-07": rules.catheter_monitoring,
}


def _shown(match_patterns: set[str], plans: Sequence[CardPlan]) -> str:
    for index, plan in enumerate(plans, 1):
        if match_patterns & set(plan.patterns):
            return f"card {index} ({plan.indicator})"
        if match_patterns & {f.pattern for f in plan.folded}:
            return f"folded into card {index} ({plan.indicator})"
    return "not shown (the answer policy keeps one clear answer)"


def _rule_entry(
    rule: str,
    pattern: str,
    title: str,
    fired: Iterable[Match],
    conditions: list[dict[str, Any]],
    plans: Sequence[CardPlan],
    statement: str,
) -> dict[str, Any]:
    matched = list(fired)
    entry: dict[str, Any] = {
        "rule": rule,
        "pattern": pattern,
        "title": title,
        "statement": statement,
        "fired": bool(matched),
        "conditions": conditions,
    }
    if matched:
        entry["indicator"] = matched[0].indicator
        entry["shown"] = _shown({x.pattern for x in matched}, plans)
        entry["evidence"] = [str(f.source) for x in matched for f in x.evidence]
    return entry


def explain(analysis: Analysis, content: Content, record: PatientRecord) -> dict[str, Any]:
    """The workbench's "why" panel: per episode, every rule pattern with its conditions."""
    settings, wording = content.settings, content.wording
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
            "summary": (
                "No epidural or other neuraxial procedure was found, so no rule applies and the "
                "service returns no card."
            ),
            "procedures": procedures,
        }
    out: list[dict[str, Any]] = []
    for ep in analysis.episodes:
        mine = [x for x in analysis.matches if x.episode == ep]
        entries = []
        for pattern, (rule, windows) in WINDOWED.items():
            conditions = [window(w, ep, analysis.findings, settings, analysis.now) for w in windows]
            if pattern == "abscess":
                fired = [x for x in mine if x.pattern in ("abscess", "fever_after_epidural")]
            else:
                fired = [x for x in mine if x.pattern == pattern]
            title = wording.cards[pattern].headline if pattern in wording.cards else pattern
            entries.append(
                _rule_entry(
                    rule,
                    pattern,
                    title,
                    fired,
                    conditions,
                    analysis.plans,
                    _statement(_STATEMENTS[rule]),
                )
            )
        r03 = [x for x in mine if x.rule == "R-03"]
        entries.append(
            _rule_entry(
                "R-03",
                "antithrombotic_timing",
                "Anticoagulant timing against ASRA intervals",
                r03,
                _antithrombotic(ep, analysis, content),
                analysis.plans,
                "When a dose falls inside an ASRA interval around the puncture, the catheter or "
                "its removal, then raise a warning stating each fact.",
            )
        )
        r07 = [x for x in mine if x.rule == "R-07"]
        entries.append(
            _rule_entry(
                "R-07",
                "catheter_monitoring",
                wording.cards["catheter_monitoring"].headline
                if "catheter_monitoring" in wording.cards
                else "Catheter monitoring",
                r07,
                _monitoring(ep, settings, analysis.now),
                analysis.plans,
                _statement(_STATEMENTS["R-07"]),
            )
        )
        covered = {e["pattern"] for e in entries} | {"fever_after_epidural"}
        for x in mine:
            if x.pattern in covered or x.rule in ("R-03", "R-07"):
                continue
            covered.add(x.pattern)
            title = wording.cards[x.pattern].headline if x.pattern in wording.cards else x.pattern
            evidence = [
                {
                    "resource": str(f.source),
                    "text": f"{f.label}, {when_text(f)}",
                    "checks": {},
                    "passed": True,
                }
                for f in x.evidence
            ]
            cond = [{"text": "Evidence the rule used", "met": True, "note": "", "found": evidence}]
            entries.append(_rule_entry(x.rule, x.pattern, title, [x], cond, analysis.plans, ""))
        out.append(
            {
                "episode": str(ep.source),
                "label": ep.label,
                "procedureClass": ep.procedure_class,
                "entries": entries,
            }
        )
    count = sum(1 for e in out for r in e["entries"] if r["fired"])
    summary = f"{len(out)} epidural episode(s); {count} rule pattern(s) fired."
    if not analysis.plans:
        summary += " No card: no rule's conditions were all met."
    return {"episodes": out, "summary": summary}


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
