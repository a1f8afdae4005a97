"""R-03 (antithrombotic timing conflicts) and the ASRA facts of R-07 (clinical-spec §3.3).

Each conflict is checked against the ASRA table of ``cards/asra.yaml`` using administration
times; orders alone only say a drug was intended, so they can raise the "catheter in place"
conflict with "timing uncertain" and nothing else. The rule decides and states the facts (drug,
dose class, hours, interval); the wording is content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.clinical import model, neuraxial_timing
from service.clinical.asra import HIGH, LOW, AsraTable, Exposure
from service.clinical.findings import Findings
from service.clinical.medications import ANTITHROMBOTIC, THROMBOLYTIC, WARFARIN
from service.clinical.model import Episode, Fact, Finding, Match, MedicationEvent
from service.clinical.settings import ClinicalSettings
from service.clinical.timing import format_delta

REMOVAL = "event_removal"
PRESUMED_REMOVAL = "event_presumed_removal"
PUNCTURE = "event_puncture"
# Order of R-03 patterns, most important first (the card's summary names the first).
R03_PATTERNS = (
    "antithrombotic_in_situ",
    "antithrombotic_after",
    "antithrombotic_before",
    "inr_at_removal",
    "inr_missing",
    "inr_in_situ",
    "heparin_platelets",
    "thrombolytic_after_puncture",
    "thrombolytic_ordered_after_puncture",
)
THROMBOLYTIC_PATTERNS = ("thrombolytic_after_puncture", "thrombolytic_ordered_after_puncture")


_ANCHOR_EVENT = {
    neuraxial_timing.PUNCTURE: PUNCTURE,
    neuraxial_timing.REMOVAL: REMOVAL,
    # A removal that was not recorded is named as presumed wherever a dose is timed from it (§3.1).
    neuraxial_timing.PRESUMED_REMOVAL: PRESUMED_REMOVAL,
    neuraxial_timing.PLANNED_REMOVAL: REMOVAL,
}


def _dose_phrase(exposure: Exposure) -> str:
    if not exposure.dose_class_known:
        return "dose_assumed_high"
    return "dose_low" if exposure.dose_class == LOW else "dose_high"


def _hours(delta: timedelta) -> str:
    return format_delta(delta.total_seconds() / 3600.0)


Conflict = tuple[str, tuple[tuple[str, str], ...], Fact, MedicationEvent | None]
"""One R-03 trigger: its pattern, its summary parameters, its fact and the dose or order."""


class _Conflicts:
    """Collects the conflicts of one episode: pattern, summary params, facts, medications."""

    def __init__(self) -> None:
        self.found: list[Conflict] = []
        self.notes: list[Fact] = []

    def add(
        self,
        pattern: str,
        params: dict[str, str],
        fact_key: str,
        event: MedicationEvent | None = None,
    ) -> None:
        items = tuple(sorted(params.items()))
        self.found.append((pattern, items, Fact(fact_key, items), event))


def _removal_not_recorded(episode: Episode) -> Fact:
    """The "removal time not recorded" statement of a presumed catheter (§3.1 amended)."""
    until = episode.presumed_until
    return Fact(
        "fact_removal_not_recorded",
        (("time", until.isoformat()),) if until is not None else (),
    )


def window_end(episode: Episode, settings: ClinicalSettings, now: datetime) -> datetime:
    """The end of R-03's window: 48 h after the catheter's removal (recorded or presumed), or
    after a single-shot puncture; ``now`` while a catheter is in place (§3.5: the card ends
    with its window, and the window is never shortened)."""
    if episode.removed is not None:
        return episode.removed.latest + settings.antithrombotic_after_removal
    if episode.presumed_until is not None:
        return episode.presumed_until + settings.antithrombotic_after_removal
    if episode.catheter_in_situ:
        return now
    return episode.punctured.latest + settings.antithrombotic_after_removal


def _exposures(
    medications: Sequence[MedicationEvent], table: AsraTable, opens: datetime, closes: datetime
) -> list[tuple[MedicationEvent, Exposure]]:
    out = []
    for event in medications:
        if ANTITHROMBOTIC not in event.classes or event.start is None:
            continue
        if event.start.latest < opens or event.start.earliest > closes:
            continue
        exposure = table.classify(event)
        if exposure is not None:
            out.append((event, exposure))
    return out


def _check_dose(
    episode: Episode, event: MedicationEvent, exposure: Exposure, out: _Conflicts
) -> None:
    """Triggers a (too close before), b (catheter in place) and c (too soon after) for one dose."""
    if event.start is None:
        return
    at = event.start.earliest
    interval = exposure.interval
    base = {"drug": exposure.drug.names[0], "dose_class_phrase": _dose_phrase(exposure)}
    punct = episode.punctured.latest
    events = [(punct, PUNCTURE, interval.after_puncture)]
    if episode.removed is not None:
        events.append((episode.removed.latest, REMOVAL, interval.after_removal))
    for moment, name, _after in events:
        gap = at - moment
        before = interval.before
        if name == REMOVAL and interval.before_removal is not None:
            before = interval.before_removal
        if timedelta(0) < -gap < before:
            params = {**base, "hours": _hours(-gap), "interval": _hours(before)}
            out.add(
                "antithrombotic_before", {**params, "event_phrase": name}, "fact_dose_before", event
            )
    if at >= punct:
        # "Too soon after" is the shared earliest-safe-time rule, so that an order for the same
        # drug at the same time is judged alike (service/clinical/neuraxial_timing.py).
        timing = neuraxial_timing.next_dose(episode, exposure, at)
        name, moment = PUNCTURE, punct
        if timing.earliest is not None:
            name, moment = _ANCHOR_EVENT[timing.anchor], timing.earliest - timing.interval
        if timing.earliest is not None and timing.conflicts and at >= moment:
            params = {**base, "hours": _hours(at - moment), "interval": _hours(timing.interval)}
            out.add(
                "antithrombotic_after", {**params, "event_phrase": name}, "fact_dose_after", event
            )
            if timing.anchor == neuraxial_timing.PRESUMED_REMOVAL:
                out.notes.append(_removal_not_recorded(episode))
    in_place_until = (
        episode.removed.latest if episode.removed is not None else episode.presumed_until
    )
    catheter_in = (
        episode.procedure_class == model.CATHETER
        and at >= punct
        and (in_place_until is None or at < in_place_until)
    )
    if catheter_in and not interval.catheter_allowed and THROMBOLYTIC not in event.classes:
        out.add("antithrombotic_in_situ", base, "fact_in_situ", event)
        if episode.removal_unknown:
            out.notes.append(_removal_not_recorded(episode))
        if episode.removed is None:
            allowed = event.start.latest + interval.before
            removal = {**base, "time": allowed.isoformat(), "interval": _hours(interval.before)}
            out.notes.append(Fact("fact_removal_not_before", tuple(sorted(removal.items()))))
    if interval.note:
        out.notes.append(
            Fact("fact_note", (("drug", exposure.drug.names[0]), ("note", interval.note)))
        )


def _warfarin(
    episode: Episode,
    on_warfarin: bool,
    inrs: Sequence[Finding],
    settings: ClinicalSettings,
    out: _Conflicts,
) -> None:
    """Trigger d: INR at catheter removal, or with the catheter in place."""
    if not on_warfarin or episode.procedure_class != model.CATHETER:
        return
    limit = f"{settings.inr_removal_max:g}"
    if episode.removed is not None:
        removed = episode.removed.latest
        before = [
            f for f in inrs if removed - settings.inr_before_removal <= f.when.latest <= removed
        ]
        if not before:
            out.add(
                "inr_missing", {"hours": _hours(settings.inr_before_removal)}, "fact_inr_missing"
            )
            return
        latest = max(before, key=lambda f: f.when.latest)
        if latest.amount is not None and latest.amount >= settings.inr_removal_max:
            params = {"inr": f"{latest.amount:g}", "limit": limit}
            out.add("inr_at_removal", params, "fact_inr_high")
    elif episode.catheter_in_situ:
        current = [f for f in inrs if f.when.latest >= episode.punctured.earliest]
        if current:
            latest = max(current, key=lambda f: f.when.latest)
            if latest.amount is not None and latest.amount > settings.inr_in_situ_max:
                params = {"inr": f"{latest.amount:g}", "limit": f"{settings.inr_in_situ_max:g}"}
                out.add("inr_in_situ", params, "fact_inr_in_situ")


def heparin_course(
    heparin: Sequence[MedicationEvent], moment: datetime, settings: ClinicalSettings
) -> bool:
    """Trigger e's "heparin for more than 4 days" (amended 2026-12-01).

    A course is administered doses spanning more than 4 days from first to last, or an order
    active for more than 4 days, ending within 24 h before (or running at) the puncture or
    removal. One dose is not a course, however long ago it was given.
    """
    course = settings.heparin_days_needing_platelets
    recent = moment - settings.platelets_before
    doses = [e.start for e in heparin if e.administered and e.start is not None]
    doses = [d for d in doses if d.earliest <= moment]
    if len(doses) >= 2:
        first = min(d.earliest for d in doses)
        last = max(d.latest for d in doses)
        if min(last, moment) - first > course and last >= recent:
            return True
    for order in heparin:
        if order.administered or order.start is None or order.start.earliest > moment:
            continue
        ended = order.end.latest if order.end is not None else None
        if ended is None and not order.in_progress:
            continue  # a completed order without an end says nothing about its length
        until = moment if ended is None else min(ended, moment)
        if until - order.start.earliest > course and until >= recent:
            return True
    return False


def _heparin_platelets(
    episode: Episode,
    heparin: Sequence[MedicationEvent],
    platelets: Sequence[Finding],
    settings: ClinicalSettings,
    out: _Conflicts,
) -> None:
    """Trigger e: a heparin course of more than 4 days and no platelet count before
    removal/puncture."""
    moment, name = (
        (episode.removed.latest, REMOVAL)
        if episode.removed is not None
        else (episode.punctured.latest, PUNCTURE)
    )
    if not heparin_course(heparin, moment, settings):
        return
    counted = [
        f for f in platelets if moment - settings.platelets_before <= f.when.latest <= moment
    ]
    if not counted:
        params = {
            "days": _hours(settings.heparin_days_needing_platelets),
            "hours": _hours(settings.platelets_before),
            "event_phrase": name,
        }
        out.add("heparin_platelets", params, "fact_heparin_platelets")


@dataclass(frozen=True)
class TimingReview:
    """What R-03 found for one episode at ``now``.

    ``raised`` are the conflicts of the card; ``expired`` those found after R-03's window had
    closed (at ``closes``), which no longer raise one. ``exposures`` are the doses and orders it
    looked at. :func:`timing_conflicts` builds its match from this; the card workbench reads the
    same object to show each trigger that did or did not fire.
    """

    raised: tuple[Conflict, ...]
    expired: tuple[Conflict, ...]
    notes: tuple[Fact, ...]
    closes: datetime
    exposures: tuple[tuple[MedicationEvent, Exposure], ...]


def review(
    episode: Episode,
    medications: Sequence[MedicationEvent],
    findings: Findings,
    table: AsraTable,
    settings: ClinicalSettings,
    now: datetime,
) -> TimingReview:
    """Every R-03 trigger of one episode (see :func:`timing_conflicts` for the rule)."""
    opens = episode.punctured.earliest - settings.antithrombotic_lookback
    closes = window_end(episode, settings, now)
    thrombolytic_closes = episode.punctured.latest + settings.thrombolytic_after_puncture
    exposures = [
        (e, x)
        for e, x in _exposures(medications, table, opens, max(closes, thrombolytic_closes))
        if e.start is not None and (e.start.earliest <= closes or THROMBOLYTIC in e.classes)
    ]
    out = _Conflicts()
    administered = [(e, x) for e, x in exposures if e.administered]
    given_drugs = {x.drug.key for _, x in administered}
    for event, exposure in administered:
        if THROMBOLYTIC in event.classes and event.start is not None:
            gap = event.start.earliest - episode.punctured.latest
            if now > thrombolytic_closes + settings.antithrombotic_after_removal:
                continue  # its own window (10 d after the puncture) has ended
            if timedelta(0) <= gap <= settings.thrombolytic_after_puncture:
                params = {
                    "drug": exposure.drug.names[0],
                    "hours": _hours(gap),
                    "days": _hours(settings.thrombolytic_after_puncture),
                }
                out.add("thrombolytic_after_puncture", params, "fact_thrombolytic", event)
            continue
        _check_dose(episode, event, exposure, out)
    for event, exposure in exposures:
        if event.administered or exposure.drug.key in given_drugs or not event.in_progress:
            continue
        if THROMBOLYTIC in event.classes and event.start is not None:
            # Trigger f) from an active order alone (no administration recorded): a warning with
            # "order only", never more (clinical-spec §3.1 antithrombotic exposure).
            gap = event.start.earliest - episode.punctured.latest
            within = timedelta(0) <= gap <= settings.thrombolytic_after_puncture
            if within and now <= thrombolytic_closes + settings.antithrombotic_after_removal:
                params = {
                    "drug": exposure.drug.names[0],
                    "hours": _hours(gap),
                    "days": _hours(settings.thrombolytic_after_puncture),
                }
                out.add(
                    "thrombolytic_ordered_after_puncture", params, "fact_thrombolytic_order", event
                )
            continue
        if (
            episode.procedure_class == model.CATHETER
            and episode.catheter_in_situ
            and not exposure.interval.catheter_allowed
        ):
            base = {"drug": exposure.drug.names[0], "dose_class_phrase": _dose_phrase(exposure)}
            out.add("antithrombotic_in_situ", base, "fact_in_situ_order", event)
    # The INR matters at removal only when warfarin was taken before it (or is ordered then).
    until = episode.removed.latest if episode.removed is not None else now
    on_warfarin = any(
        WARFARIN in e.classes and e.start is not None and e.start.earliest <= until
        for e, _ in exposures
    )
    if now <= closes:
        _warfarin(episode, on_warfarin, findings.of("inr"), settings, out)
        heparin = [e for e, x in exposures if x.drug.key.startswith("heparin")]
        _heparin_platelets(episode, heparin, findings.of("platelets"), settings, out)
    raised, expired = out.found, []
    if now > closes:
        # Past R-03's window only a thrombolytic conflict (its own 10-day window) remains.
        raised = [c for c in out.found if c[0] in THROMBOLYTIC_PATTERNS]
        expired = [c for c in out.found if c[0] not in THROMBOLYTIC_PATTERNS]
    return TimingReview(tuple(raised), tuple(expired), tuple(out.notes), closes, tuple(exposures))


def timing_conflicts(
    episode: Episode,
    medications: Sequence[MedicationEvent],
    findings: Findings,
    table: AsraTable,
    settings: ClinicalSettings,
    now: datetime,
) -> list[Match]:
    """R-03: antithrombotic doses in conflict with the puncture, the catheter or its removal.

    When, from 10 days before the puncture to 48 h after catheter removal, a dose falls inside an
    ASRA interval, a "no catheter" drug is given with the catheter in place, warfarin's INR at
    removal is 1.5 or more (or missing), heparin ran over 4 days without a platelet count, or a
    thrombolytic follows the puncture within 10 days, then raise one warning stating each fact.
    """
    found = review(episode, medications, findings, table, settings, now)
    if not found.raised:
        return []
    rank = {p: i for i, p in enumerate(R03_PATTERNS)}
    conflicts = sorted(found.raised, key=lambda c: rank[c[0]])
    pattern, summary_params, _, _ = conflicts[0]
    facts = tuple(dict.fromkeys([*(c[2] for c in found.raised), *found.notes]))
    meds = tuple(dict.fromkeys(c[3] for c in found.raised if c[3] is not None))
    return [
        Match(
            pattern,
            "R-03",
            model.WARNING,
            episode,
            (),
            params=summary_params,
            facts=facts,
            medications=meds,
        )
    ]


def monitoring_facts(
    episode: Episode,
    medications: Sequence[MedicationEvent],
    table: AsraTable,
) -> tuple[Fact, ...]:
    """R-07: for each antithrombotic given around the catheter, when the next step is allowed."""
    facts: list[Fact] = [_removal_not_recorded(episode)] if episode.removal_unknown else []
    latest: dict[str, tuple[MedicationEvent, Exposure]] = {}
    for event in medications:
        if not event.administered or ANTITHROMBOTIC not in event.classes or event.start is None:
            continue
        if event.start.latest < episode.punctured.earliest - timedelta(days=10):
            continue
        exposure = table.classify(event)
        if exposure is None:
            continue
        current = latest.get(exposure.drug.key)
        if current is None or event.start.latest > (current[0].start or event.start).latest:
            latest[exposure.drug.key] = (event, exposure)
    for event, exposure in latest.values():
        base = {"drug": exposure.drug.names[0], "dose_class_phrase": _dose_phrase(exposure)}
        if episode.catheter_in_situ and event.start is not None:
            allowed = event.start.latest + exposure.interval.before
            params = {
                **base,
                "time": allowed.isoformat(),
                "interval": _hours(exposure.interval.before),
            }
            facts.append(Fact("fact_removal_not_before", tuple(sorted(params.items()))))
        elif episode.removed is not None:
            # The same earliest time an order for this drug would be given (neuraxial_timing).
            timing = neuraxial_timing.next_dose(episode, exposure, episode.removed.latest)
            if timing.earliest is None:
                continue
            params = {
                **base,
                "time": timing.earliest.isoformat(),
                "interval": _hours(timing.interval),
            }
            key = (
                "fact_next_dose"
                if timing.anchor != neuraxial_timing.PUNCTURE
                else ("fact_next_dose_after_puncture")
            )
            facts.append(Fact(key, tuple(sorted(params.items()))))
    return tuple(facts)


__all__ = ["HIGH", "LOW", "R03_PATTERNS", "monitoring_facts", "review", "timing_conflicts"]
