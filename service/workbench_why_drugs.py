"""The "why" panel's medication rules: R-03 (antithrombotic timing) and R-07 (catheter reminder).

R-03 has many triggers (a dose too close before or after the puncture or removal, a drug given
with the catheter in place, warfarin's INR, a heparin course without platelets, a thrombolytic),
so its entry is read from the engine's own review of them
(:func:`service.clinical.antithrombotics.review`): one alternative per dose or order it looked
at, met when the engine raised a conflict on it, each conflict stated with the card's own
sentence, and the interval found against ASRA's for the doses that were not in conflict. R-07
follows :func:`service.clinical.rules.catheter_monitoring` step by step.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.card_detail import fill
from service.clinical import antithrombotics, model, rules
from service.clinical.antithrombotics import Conflict, TimingReview
from service.clinical.medications import WARFARIN
from service.clinical.model import MedicationEvent
from service.workbench_analysis import dose_intervals
from service.workbench_conditions import (
    Condition,
    Entry,
    Why,
    condition,
    finding_text,
    headline,
    hours_text,
    line,
    plain,
    statement,
    time_text,
)

_R03 = statement(antithrombotics.timing_conflicts)
_INR = ("inr_at_removal", "inr_missing", "inr_in_situ")


def _sentence(why: Why, conflict: Conflict) -> str:
    """A conflict in the words its card uses."""
    phrases = why.content.wording.phrases
    fact = conflict[2]
    return fill(phrases.get(fact.key, fact.key), fact.params, phrases)


def _conflict_lines(
    why: Why, conflicts: Sequence[Conflict], raised: bool
) -> list[dict[str, object]]:
    return [
        line(
            str(c[3].source) if c[3] is not None else str(why.episode.source),
            f"{c[0]}: {_sentence(why, c)}",
            {"insideWindow": raised},
        )
        for c in conflicts
    ]


def _dose(why: Why, found: TimingReview, event: MedicationEvent, label: str) -> Condition:
    raised = [c for c in found.raised if c[3] == event]
    expired = [c for c in found.expired if c[3] == event]
    if raised:
        note = "a conflict"
    elif expired:
        note = f"a conflict, but R-03's window closed at {time_text(found.closes)}"
    elif event.administered:
        note = "no conflict: outside every ASRA interval"
    else:
        note = _order_note(found, event)
    lines = _conflict_lines(why, raised, True) + _conflict_lines(why, expired, False)
    if not lines:
        kind = "given" if event.administered else "ordered (no administration recorded)"
        lines = [line(str(event.source), f"{event.name}, {kind}", {"conflict": False})]
    return condition(label, bool(raised), lines, note, one_of=True)


def _order_note(found: TimingReview, event: MedicationEvent) -> str:
    """Why an order raised no conflict (R-03 judges orders only where no dose was given)."""
    drug = next(x.drug.key for e, x in found.exposures if e == event)
    if any(e.administered and x.drug.key == drug for e, x in found.exposures):
        return "no conflict: the doses given of this drug are judged instead of the order"
    if not event.in_progress:
        return "no conflict: the order is not active"
    return "no conflict: allowed with a catheter, no catheter in place, or outside its window"


def _label(event: MedicationEvent, intervals: dict[str, str]) -> str:
    known = intervals.get(str(event.source))
    if known is not None:
        return known
    at = time_text(event.start) if event.start is not None else "time not recorded"
    if event.administered:
        return f"{event.name} given {at}"
    return f"{event.name} ordered {at} (order only: dose timing uncertain)"


def _warfarin(why: Why, found: TimingReview) -> Condition:
    settings, ep = why.settings, why.episode
    raised = [c for c in found.raised if c[0] in _INR]
    expired = [c for c in found.expired if c[0] in _INR]
    removed = ep.removed.latest if ep.removed is not None else None
    lines = _conflict_lines(why, raised, True) + _conflict_lines(why, expired, False)
    for f in why.findings.of("inr"):
        checks = {}
        if removed is not None:
            checks["beforeRemoval"] = (
                removed - settings.inr_before_removal <= f.when.latest <= removed
            )
        else:
            checks["afterPuncture"] = f.when.latest >= ep.punctured.earliest
        lines.append(line(str(f.source), finding_text(f), checks))
    return condition(
        f"Warfarin: no INR in the {hours_text(settings.inr_before_removal)} before catheter "
        f"removal, an INR of {settings.inr_removal_max:g} or more there, or above "
        f"{settings.inr_in_situ_max:g} with the catheter in place",
        bool(raised),
        lines,
        "" if raised else "the INR was in range, or no removal or catheter to check it for",
        one_of=True,
    )


def _heparin(why: Why, found: TimingReview) -> Condition:
    settings, ep = why.settings, why.episode
    raised = [c for c in found.raised if c[0] == "heparin_platelets"]
    expired = [c for c in found.expired if c[0] == "heparin_platelets"]
    moment = ep.removed.latest if ep.removed is not None else ep.punctured.latest
    event = "removal" if ep.removed is not None else "puncture"
    heparin = [e for e, x in found.exposures if x.drug.key.startswith("heparin")]
    course = antithrombotics.heparin_course(heparin, moment, settings)
    lines = _conflict_lines(why, raised, True) + _conflict_lines(why, expired, False)
    for f in why.findings.of("platelets"):
        within = moment - settings.platelets_before <= f.when.latest <= moment
        lines.append(line(str(f.source), finding_text(f), {"beforeEvent": within}))
    return condition(
        f"Heparin for more than {hours_text(settings.heparin_days_needing_platelets)} and no "
        f"platelet count in the {hours_text(settings.platelets_before)} before the {event}",
        bool(raised),
        lines,
        f"heparin course of more than {hours_text(settings.heparin_days_needing_platelets)}: "
        + ("yes" if course else "no"),
        one_of=True,
    )


def timing(why: Why) -> Entry:
    """R-03 for one episode, from the engine's review of every dose, order and lab."""
    title = "Anticoagulant timing against ASRA intervals"
    table = why.content.asra
    if table is None:
        unmet = plain("The ASRA interval table is loaded", False, "R-03 does not run without it")
        return Entry("R-03", "antithrombotic_timing", title, _R03, (unmet,), _patterns())
    found = antithrombotics.review(
        why.episode, why.meds, why.findings, table, why.settings, why.now
    )
    intervals = {
        d["resource"]: d["label"] for d in dose_intervals(why.episode, why.meds, why.content)
    }
    conditions = [
        _dose(why, found, event, _label(event, intervals))
        for event in dict.fromkeys(e for e, _ in found.exposures)
    ]
    if any(WARFARIN in e.classes for e, _ in found.exposures):
        conditions.append(_warfarin(why, found))
    if any(x.drug.key.startswith("heparin") for _, x in found.exposures):
        conditions.append(_heparin(why, found))
    if not conditions:
        lookback = hours_text(why.settings.antithrombotic_lookback)
        conditions.append(
            plain(
                f"An anticoagulant, antiplatelet or thrombolytic dose or order from {lookback} "
                "before the puncture",
                False,
                "none recorded",
                one_of=True,
            )
        )
    return Entry("R-03", "antithrombotic_timing", title, _R03, tuple(conditions), _patterns())


def _patterns() -> frozenset[str]:
    return frozenset(antithrombotics.R03_PATTERNS)


def monitoring(why: Why) -> Entry:
    """R-07: the catheter is in place, or came out within 24 h (48 h with warfarin)."""
    ep, settings, now = why.episode, why.settings, why.now
    on_warfarin = any(WARFARIN in m.classes and (m.in_progress or m.administered) for m in why.meds)
    window = (
        settings.monitoring_after_removal_warfarin
        if on_warfarin
        else settings.monitoring_after_removal
    )
    removed = ep.removed
    recent = removed is not None and removed.earliest <= now <= removed.latest + window
    if removed is None:
        note = "no removal recorded"
    else:
        note = f"removed {hours_text(now - removed.latest)} before now"
    note += "; warfarin recorded" if on_warfarin else "; no warfarin recorded"
    return Entry(
        "R-07",
        "catheter_monitoring",
        headline(why.content, "catheter_monitoring", "Catheter monitoring"),
        statement(rules.catheter_monitoring),
        (
            plain(
                "The procedure is an epidural catheter",
                ep.procedure_class == model.CATHETER,
                ep.procedure_class,
            ),
            plain("The catheter is in place", ep.catheter_in_situ, one_of=True),
            plain(
                f"The catheter was removed less than "
                f"{hours_text(settings.monitoring_after_removal)} ago "
                f"({hours_text(settings.monitoring_after_removal_warfarin)} with warfarin)",
                recent,
                note,
                one_of=True,
            ),
        ),
    )


def episode_entries(why: Why) -> list[Entry]:
    """R-03 and R-07 for one episode."""
    return [timing(why), monitoring(why)]
