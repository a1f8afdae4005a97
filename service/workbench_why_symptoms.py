"""The "why" panel's symptom rules: R-05 (both variants), R-06, R-10 and R-11.

Each function follows its rule in ``service/clinical/`` step by step
(:func:`rules.persisting_symptoms`, :func:`rules.dense_block_during_infusion`,
:func:`local_effects.isolated_retention`, :func:`headache.post_puncture_headache`,
:func:`local_effects.site_soreness`) and turns each step into a condition with the values it
looked at (``service/workbench_conditions.py``).
"""

from __future__ import annotations

from service.clinical import headache, local_effects, model, rules
from service.clinical.model import PainScore
from service.workbench_conditions import (
    Condition,
    Entry,
    Why,
    condition,
    current,
    finding_text,
    headline,
    hours_text,
    line,
    plain,
    statement,
    time_text,
    window,
)


def persisting(why: Why) -> Entry:
    """R-05: leg symptoms past the block (14 days), or a high or rising leg-pain score."""
    ep, settings = why.episode, why.settings
    length = settings.persistence_window
    has_end = ep.procedure_class != model.NEURAXIAL_OTHER and ep.block_ends is not None
    note = (
        "a spinal or lumbar puncture"
        if ep.procedure_class == model.NEURAXIAL_OTHER
        else ("the infusion is still running" if ep.block_ends is None else "")
    )
    symptoms_c, symptoms = window(
        why,
        "New leg numbness, heaviness, weakness or pain within {window} of the puncture",
        rules.PERSISTING,
        after_block=True,
        length=length,
        one_of=True,
    )
    scores: list[model.Finding] = []
    if ep.procedure_class != model.CATHETER:
        leg_pain = why.scope.select(why.findings.of("leg_pain"), after_block=False, length=length)
        scores = rules.leg_pain_scores(ep, why.findings, leg_pain, settings)
        grades = bool(leg_pain)
    else:
        grades = False
    counted = {str(f.source) for f in scores}
    score_c = condition(
        f"A leg-pain score of {settings.pain_score_high:g} or more, or "
        f"{settings.pain_score_rise:g} points over the last score before the procedure, after "
        "the block (never after a labour or surgical catheter; it must grade a leg-pain "
        "finding or a leg site)",
        bool(scores),
        [_score_line(p, why, grades, str(p.source) in counted) for p in why.findings.pain_scores],
        "not used after an epidural catheter" if ep.procedure_class == model.CATHETER else "",
        one_of=True,
    )
    evidence = (symptoms + scores) if has_end else []
    return Entry(
        "R-05",
        "persisting_symptoms",
        headline(why.content, "persisting_symptoms"),
        statement(rules.persisting_symptoms),
        (
            plain(
                "A block end is expected (not a spinal or lumbar puncture, no infusion running)",
                has_end,
                note,
            ),
            symptoms_c,
            score_c,
            current(why, "R-05", evidence, ep.punctured.latest + length),
        ),
    )


def _score_line(score: PainScore, why: Why, grades: bool, counted: bool) -> dict[str, object]:
    ep = why.episode
    after = ep.block_ends is not None and score.when.latest > ep.block_ends
    in_window = score.when.earliest <= ep.punctured.latest + why.settings.persistence_window
    text = f"Pain score {score.score:g}/10, {time_text(score.when)}"
    checks = {
        "afterBlock": after,
        "inWindow": in_window,
        "gradesLegPain": grades or score.lower_limb,
        "highOrRising": counted,
    }
    return line(str(score.source), text, checks)


def dense_block(why: Why) -> Entry:
    """R-05's infusion variant: new leg weakness while an epidural infusion still runs."""
    ep, settings = why.episode, why.settings
    running = ep.procedure_class == model.CATHETER and ep.block_ends is None
    weak_c, weak = window(
        why,
        "New leg weakness within {window} of the puncture or catheter removal",
        rules.WEAKNESS,
        after_block=False,
        length=settings.hematoma_window,
        from_reference=True,
    )
    ends = ep.reference.latest + settings.hematoma_window
    return Entry(
        "R-05",
        "dense_block_infusion",
        headline(why.content, "dense_block_infusion"),
        statement(rules.dense_block_during_infusion),
        (
            plain(
                "An epidural catheter whose infusion is still running (no block end expected yet)",
                running,
                "" if running else f"{ep.procedure_class}, block ends {time_text(ep.block_ends)}",
            ),
            weak_c,
            current(why, "R-05", weak if running else [], ends),
        ),
    )


def retention(why: Why) -> Entry:
    """R-06: urinary retention while the block may explain it, with no other sign."""
    ep, settings = why.episode, why.settings
    s = why.scope
    ends = ep.block_ends
    late = settings.retention_after_block
    candidates = why.findings.of("urinary_retention")
    found = [f for f in candidates if s.new(f) and (ends is None or f.when.earliest <= ends + late)]
    window_end = why.now if ends is None else ends + late
    limit = "while the infusion runs" if ends is None else f"up to {time_text(ends + late)}"
    length = settings.cauda_equina_window
    deficits_c, deficits = window(
        why,
        "A new leg deficit within {window} of the puncture",
        local_effects.LEG_DEFICITS,
        after_block=True,
        length=length,
    )
    sphincter_c, sphincter = window(
        why,
        "Saddle numbness or incontinence within {window} of the puncture",
        local_effects.SPHINCTER_OR_SADDLE,
        after_block=False,
        length=length,
    )
    return Entry(
        "R-06",
        "isolated_retention",
        headline(why.content, "isolated_retention"),
        statement(local_effects.isolated_retention),
        (
            condition(
                f"New urinary retention from the puncture to {hours_text(late)} after the "
                f"expected block end ({limit})",
                bool(found),
                [
                    line(
                        str(f.source),
                        finding_text(f),
                        {
                            "new": s.new(f),
                            "beforeLimit": ends is None or f.when.earliest <= ends + late,
                        },
                    )
                    for f in candidates
                ],
            ),
            current(why, "R-06", found, window_end),
            _none(
                deficits_c,
                not deficits,
                f"No new leg deficit after the expected block end, within {hours_text(length)} "
                "of the puncture (with one: R-01)",
            ),
            _none(
                sphincter_c,
                not sphincter,
                f"No saddle numbness or incontinence within {hours_text(length)} of the puncture "
                "(with one: R-01)",
            ),
        ),
    )


def _none(found: Condition, met: bool, text: str) -> Condition:
    """A condition that holds when nothing was found (the values listed are what would break it)."""
    return dict(found, met=met, text=text)


def post_puncture_headache(why: Why) -> list[Entry]:
    """R-10: a new headache within 14 days; within 5 days and typical -> info, else warning."""
    ep, settings = why.episode, why.settings
    s = why.scope
    long = settings.headache_atypical_window
    short = settings.headache_window
    late_c, late = window(
        why,
        "A new headache within {window} of the puncture",
        headache.HEADACHE,
        after_block=False,
        length=long,
    )
    ends = ep.punctured.latest + long
    now_c = current(why, "R-10", late, ends)
    early = [f for f in late if s.by(f, short)]
    early_lines = [
        line(str(f.source), finding_text(f), {"withinShortWindow": s.by(f, short)}) for f in late
    ]
    atypical_c, atypical = window(
        why,
        "Fever, neck stiffness, seizure, altered consciousness or new weakness within {window}",
        headache.ATYPICAL,
        after_block=False,
        length=long,
    )
    rule = statement(headache.post_puncture_headache)
    started_early = condition(
        f"It started within {hours_text(short)} of the puncture", bool(early), early_lines
    )
    return [
        Entry(
            "R-10",
            "post_puncture_headache",
            headline(why.content, "post_puncture_headache"),
            rule,
            (
                late_c,
                now_c,
                started_early,
                _none(
                    atypical_c,
                    not atypical,
                    "No fever, neck stiffness, seizure, altered consciousness or new weakness "
                    f"within {hours_text(long)} (with one: the warning)",
                ),
            ),
        ),
        Entry(
            "R-10",
            "atypical_headache",
            headline(why.content, "atypical_headache"),
            rule,
            (
                late_c,
                now_c,
                dict(
                    started_early,
                    met=not early,
                    text=f"It started later than {hours_text(short)} after the puncture",
                    oneOf=True,
                ),
                dict(atypical_c, oneOf=True),
            ),
        ),
    ]


def site_soreness(why: Why) -> Entry:
    """R-11 (off by default): new back soreness within 3 days, with no other sign."""
    settings = why.settings
    sore_c, _ = window(
        why,
        "New back pain within {window} of the puncture",
        ("back_pain",),
        after_block=False,
        length=settings.site_soreness_window,
    )
    concepts = (
        *local_effects.SYSTEMIC_FLAGS,
        *local_effects.LEG_DEFICITS,
        *local_effects.SPHINCTER_OR_SADDLE,
    )
    flags_c, flags = window(
        why,
        "Fever, an infection marker, a leg symptom, saddle numbness or incontinence within "
        "{window}",
        concepts,
        after_block=False,
        length=settings.abscess_window,
    )
    enabled = settings.site_soreness_enabled
    return Entry(
        "R-11",
        "site_soreness",
        headline(why.content, "site_soreness"),
        statement(local_effects.site_soreness),
        (
            plain(
                "Enabled in cards/settings.yaml (off by default)",
                enabled,
                "" if enabled else "this optional rule is switched off",
            ),
            sore_c,
            _none(
                flags_c,
                not flags,
                "No fever, infection marker, leg symptom, saddle numbness or incontinence within "
                f"{hours_text(settings.abscess_window)}",
            ),
        ),
    )


def episode_entries(why: Why) -> list[Entry]:
    """Every R-05, R-06, R-10 and R-11 pattern for one episode."""
    return [
        persisting(why),
        dense_block(why),
        retention(why),
        *post_puncture_headache(why),
        site_soreness(why),
    ]
