"""The rules: from episodes and findings to matches (clinical-spec §3.2-§3.3).

Each rule opens with its When/Then statement. Rules only decide *whether* a pattern is present and
*on which evidence*; wording lives in ``cards/`` and the choice of what to show (one critical card,
folding, caps) lives in :mod:`service.clinical.answer`.

Time semantics (safety note 1): a finding is *new* when it may have started at or after the
puncture (with a small clock-skew tolerance); it is *after the block* when it may have been
recorded after the expected end of the local-anaesthetic effect. Partial dates therefore count as
inside a window whenever any part of them is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from service.clinical import model
from service.clinical.antithrombotics import monitoring_facts, timing_conflicts
from service.clinical.asra import AsraTable
from service.clinical.currency import Currency
from service.clinical.findings import INFECTION_MARKER, Findings
from service.clinical.headache import post_puncture_headache
from service.clinical.history import for_episode, scope_for
from service.clinical.local_effects import isolated_retention, site_soreness
from service.clinical.medications import WARFARIN
from service.clinical.model import Episode, Finding, Match, MedicationEvent
from service.clinical.settings import ClinicalSettings
from service.clinical.steroids import repeat_injections, steroid_glucose
from service.clinical.unattributed import unattributed_red_flags

WEAKNESS = ("leg_weakness", "paraplegia")
SENSORY = ("leg_numbness",)
LEG_SYMPTOMS = ("leg_weakness", "paraplegia", "leg_numbness", "leg_heaviness")
DEFICITS = (
    "leg_weakness",
    "paraplegia",
    "leg_numbness",
    "urinary_retention",
    "incontinence",
    "saddle_anaesthesia",
)
INFECTION = ("fever", INFECTION_MARKER)
LOCAL_SIGNS = ("back_pain", "site_infection")
PERSISTING = ("leg_numbness", "leg_heaviness", "leg_weakness", "leg_pain")


@dataclass(frozen=True)
class Chart:
    """Everything the rules read, extracted from one patient's record at one ``now``."""

    episodes: tuple[Episode, ...]
    findings: Findings
    medications: tuple[MedicationEvent, ...]
    now: datetime
    asra: AsraTable | None = None
    """The ASRA interval table; without it the timing rule (R-03) and facts are skipped."""


def bilateral(findings: Sequence[Finding], merge: timedelta) -> list[Finding]:
    """Findings showing both sides: a bilateral record, or left and right records close in time."""
    both = [f for f in findings if f.laterality == "bilateral"]
    if both:
        return both
    lefts = [f for f in findings if f.laterality == "left"]
    rights = [f for f in findings if f.laterality == "right"]
    for left in lefts:
        for right in rights:
            gap = abs((left.when.earliest - right.when.earliest).total_seconds())
            if gap <= merge.total_seconds():
                return [left, right]
    return []


def weakness_red_flag(findings: Sequence[Finding], settings: ClinicalSettings) -> list[Finding]:
    """The weakness findings that make a red flag: both sides, else (by setting) no side recorded.

    Public so the workbench's "why" panel shows the very selection R-01 made.
    """
    flagged = bilateral(findings, settings.laterality_merge)
    if not flagged and settings.unknown_laterality_weakness_is_red_flag:
        flagged = [f for f in findings if f.laterality is None]
    return flagged


def _match(
    pattern: str, rule: str, indicator: str, episode: Episode, evidence: Iterable[Finding]
) -> Match:
    unique = {(f.source, f.concept): f for f in evidence}
    ordered = sorted(unique.values(), key=lambda f: (f.when.earliest, f.source, f.concept))
    return Match(pattern, rule, indicator, episode, tuple(ordered))


def red_flags(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-01: a new neurological deficit or sphincter dysfunction after a neuraxial procedure.

    When a new deficit appears after the expected block (bilateral weakness or numbness, bladder or
    bowel change, saddle numbness, a deficit with fever, early bilateral weakness after an ESI, or
    a recorded spinal emergency), then raise a critical card per matched pattern.
    """
    s = scope_for(episode, findings, settings, now)
    cur = Currency.of("R-01", settings, now)
    punct = episode.punctured.latest
    hematoma_end = episode.reference.latest + settings.hematoma_window
    out: list[Match] = []
    critical = model.CRITICAL

    weak = s.select(
        findings.of(*WEAKNESS),
        after_block=True,
        length=settings.hematoma_window,
        from_reference=True,
    )
    motor = weakness_red_flag(weak, settings)
    if motor and cur.any(motor, hematoma_end):
        out.append(_match("hematoma_motor", "R-01", critical, episode, motor))

    numb = s.select(
        findings.of(*SENSORY),
        after_block=True,
        length=settings.hematoma_window,
        from_reference=True,
    )
    sensory = bilateral(numb, settings.laterality_merge)
    if sensory and cur.any(sensory, hematoma_end):
        out.append(_match("hematoma_sensory", "R-01", critical, episode, sensory))

    ces_window = settings.cauda_equina_window
    sphincter = s.select(
        findings.of("saddle_anaesthesia", "incontinence"), after_block=True, length=ces_window
    )
    retention = s.select(findings.of("urinary_retention"), after_block=True, length=ces_window)
    leg_deficit = s.select(findings.of(*LEG_SYMPTOMS), after_block=True, length=ces_window)
    late_retention = [
        f
        for f in retention
        if episode.block_ends is not None
        and f.when.latest > episode.block_ends + settings.retention_after_block
    ]
    radicular = bilateral(
        s.select(findings.of("leg_pain"), after_block=True, length=ces_window),
        settings.laterality_merge,
    )
    ces_evidence = list(sphincter) + late_retention + radicular
    if retention and leg_deficit:
        ces_evidence += retention + leg_deficit
    if ces_evidence and cur.any(ces_evidence, punct + ces_window):
        out.append(_match("cauda_equina", "R-01", critical, episode, ces_evidence))

    abscess_window = settings.abscess_window
    deficits = s.select(findings.of(*DEFICITS), after_block=True, length=abscess_window)
    infection = s.select(findings.of(*INFECTION), after_block=False, length=abscess_window)
    # The new deficit must be current; the infection signs may be older (inside the window).
    if deficits and infection and cur.any(deficits, punct + abscess_window):
        out.append(_match("abscess_deficit", "R-01", critical, episode, deficits + infection))

    if episode.procedure_class == model.ESI:
        early = [
            f for f in findings.of(*WEAKNESS) if s.new(f) and s.by(f, settings.cord_infarct_window)
        ]
        infarct = weakness_red_flag(early, settings)
        if infarct and cur.any(infarct, punct + settings.cord_infarct_window):
            out.append(_match("cord_infarct", "R-01", critical, episode, infarct))

    recorded = s.select(
        findings.of("spinal_emergency_diagnosis"), after_block=False, length=abscess_window
    )
    if recorded and cur.any(recorded, punct + abscess_window):
        out.append(_match("recorded_diagnosis", "R-01", critical, episode, recorded))
    return out


def possible_abscess(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-02: infection signs after a neuraxial procedure.

    When fever or raised infection markers appear from 24 h to 60 days after the puncture, then:
    with new back pain or insertion-site signs raise a critical card (possible epidural abscess);
    without them raise a warning to examine the site and the back.
    """
    s = scope_for(episode, findings, settings, now)
    cur = Currency.of("R-02", settings, now)
    ends = episode.punctured.latest + settings.abscess_window
    start = episode.punctured.earliest + settings.abscess_start
    infection = [
        f
        for f in s.select(
            findings.of(*INFECTION), after_block=False, length=settings.abscess_window
        )
        if f.when.latest >= start
    ]
    if not infection:
        return []
    local = s.select(findings.of(*LOCAL_SIGNS), after_block=False, length=settings.abscess_window)
    # The infection signs must be current: a fever long gone does not turn persisting back pain
    # into a possible abscess. Back pain or site signs may be older (inside the window).
    if not cur.any(infection, ends):
        return []
    if local:
        return [_match("abscess", "R-02", model.CRITICAL, episode, infection + local)]
    return [_match("fever_after_epidural", "R-02", model.WARNING, episode, infection)]


def dense_block_during_infusion(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-05 infusion variant: leg weakness while an epidural infusion is still running.

    When a catheter is in place with its infusion running (so no block end is expected yet) and
    new leg weakness is recorded, then raise a warning: the anaesthetist should review now and
    stop or reduce the infusion; weakness that persists 4 h after stopping is a red flag (R-01).
    """
    if episode.procedure_class != model.CATHETER or episode.block_ends is not None:
        return []
    s = scope_for(episode, findings, settings, now)
    weak = s.select(
        findings.of(*WEAKNESS),
        after_block=False,
        length=settings.hematoma_window,
        from_reference=True,
    )
    ends = episode.reference.latest + settings.hematoma_window
    if not Currency.of("R-05", settings, now).any(weak, ends):
        return []
    return [_match("dense_block_infusion", "R-05", model.WARNING, episode, weak)]


def persisting_symptoms(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-05: leg symptoms beyond the expected local-anaesthetic duration, without red flags.

    When new leg numbness, heaviness, weakness or pain is recorded after the block should have
    worn off and within 14 days, or a leg-pain score rises to 7 or by 2 points over the last
    score before the procedure, then raise a warning. Red-flag patterns take precedence (the
    answer policy folds this warning into a critical card).

    A 0-10 score grades leg pain only (amended 2026-12-01): it counts when a leg-pain finding
    is recorded after the puncture or the score's body site is a lower limb, never on its own,
    and never after a labour or surgical catheter, where pain scores measure other pain.
    """
    if episode.procedure_class == model.NEURAXIAL_OTHER or episode.block_ends is None:
        return []
    s = scope_for(episode, findings, settings, now)
    window = settings.persistence_window
    evidence = s.select(findings.of(*PERSISTING), after_block=True, length=window)
    if episode.procedure_class != model.CATHETER:
        evidence += leg_pain_scores(
            episode,
            findings,
            s.select(findings.of("leg_pain"), after_block=False, length=window),
            settings,
        )
    ends = episode.punctured.latest + window
    if not evidence or not Currency.of("R-05", settings, now).any(evidence, ends):
        return []
    return [_match("persisting_symptoms", "R-05", model.WARNING, episode, evidence)]


def leg_pain_scores(
    episode: Episode,
    findings: Findings,
    leg_pain: Sequence[Finding],
    settings: ClinicalSettings,
) -> list[Finding]:
    """R-05's pain-score evidence: high or rising scores that grade a leg-pain finding.

    Public so the workbench's "why" panel shows the very scores R-05 counted.
    """
    if episode.block_ends is None:
        return []
    scores_before = [p for p in findings.pain_scores if p.when.latest < episode.punctured.earliest]
    baseline = scores_before[-1].score if scores_before else None
    out: list[Finding] = []
    for score in findings.pain_scores:
        if score.when.latest <= episode.block_ends:
            continue
        if score.when.earliest > episode.punctured.latest + settings.persistence_window:
            continue
        if not (leg_pain or score.lower_limb):
            continue  # a bare 0-10 score is not a leg symptom
        rose = baseline is not None and score.score - baseline >= settings.pain_score_rise
        high = score.score >= settings.pain_score_high and (
            baseline is None or score.score > baseline
        )
        if rose or high:
            value = f"{score.score:g}/10" + (
                f" (before the procedure {baseline:g}/10)" if baseline is not None else ""
            )
            out.append(
                Finding(
                    "pain_score",
                    score.when,
                    score.source,
                    "Pain score",
                    value=value,
                    documented=score.when,
                )
            )
    return out


def catheter_monitoring(
    episode: Episode,
    medications: Sequence[MedicationEvent],
    settings: ClinicalSettings,
    now: datetime,
) -> list[Match]:
    """R-07: an epidural catheter in place or removed recently.

    When a catheter is in situ, or was removed less than 24 h ago (48 h with warfarin), then show
    an info card reminding of neurological checks and anticoagulant timing.
    """
    if episode.procedure_class != model.CATHETER:
        return []
    if episode.catheter_in_situ:
        return [_match("catheter_monitoring", "R-07", model.INFO, episode, ())]
    if episode.removed is None:
        return []
    on_warfarin = any(
        WARFARIN in m.classes and (m.in_progress or m.administered) for m in medications
    )
    window = (
        settings.monitoring_after_removal_warfarin
        if on_warfarin
        else settings.monitoring_after_removal
    )
    if episode.removed.earliest <= now <= episode.removed.latest + window:
        return [_match("catheter_monitoring", "R-07", model.INFO, episode, ())]
    return []


def evaluate(chart: Chart, settings: ClinicalSettings) -> list[Match]:
    """Every rule over every episode; the answer policy decides what is shown."""
    matches: list[Match] = []
    found, meds, now = chart.findings, chart.medications, chart.now
    for episode in chart.episodes:
        found = for_episode(chart.findings, episode)
        matches += red_flags(episode, found, settings, now)
        matches += possible_abscess(episode, found, settings, now)
        matches += persisting_symptoms(episode, found, settings, now)
        matches += dense_block_during_infusion(episode, found, settings, now)
        matches += isolated_retention(episode, found, settings, now)
        matches += post_puncture_headache(episode, found, settings, now)
        matches += steroid_glucose(episode, found, meds, settings, now)
        matches += site_soreness(episode, found, settings, now)
        monitoring = catheter_monitoring(episode, meds, settings, now)
        if chart.asra is not None:
            matches += timing_conflicts(episode, meds, found, chart.asra, settings, now)
            facts = monitoring_facts(episode, meds, chart.asra)
            monitoring = [replace(m, facts=facts) for m in monitoring]
        matches += monitoring
    matches += repeat_injections(chart.episodes, settings, now)
    attributed = any(m.indicator == model.CRITICAL for m in matches)
    matches += unattributed_red_flags(chart.episodes, chart.findings, attributed, settings, now)
    return matches
