"""The "why" panel's red-flag rules: R-01's six patterns, R-02's two, and R-04 (patient-wide).

Each function follows its rule in ``service/clinical/`` step by step (:func:`rules.red_flags`,
:func:`rules.possible_abscess`, :func:`unattributed.unattributed_red_flags`) and turns each step
into a condition with the values it looked at (``service/workbench_conditions.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.clinical import model, rules, unattributed
from service.clinical.currency import Currency
from service.clinical.findings import Findings
from service.clinical.model import Episode, Match
from service.content import Content
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
    side_condition,
    statement,
    time_text,
    window,
    window_lines,
)

_R01 = statement(rules.red_flags)
_R02 = statement(rules.possible_abscess)


def _r01(why: Why, pattern: str, *conditions: Condition) -> Entry:
    return Entry("R-01", pattern, headline(why.content, pattern), _R01, tuple(conditions))


def hematoma(why: Why) -> list[Entry]:
    """R-01 triggers 1 and 2: new weakness (both sides) or numbness of both legs after the block."""
    ep, settings = why.episode, why.settings
    end = ep.reference.latest + settings.hematoma_window
    weak_text = "New leg weakness within {window} of the puncture or catheter removal"
    weakness, weak = window(
        why,
        weak_text,
        rules.WEAKNESS,
        after_block=True,
        length=settings.hematoma_window,
        from_reference=True,
    )
    motor = rules.weakness_red_flag(weak, settings)
    unknown = " (or no side recorded)" if settings.unknown_laterality_weakness_is_red_flag else ""
    numb_text = "New leg numbness within {window} of the puncture or catheter removal"
    numbness, numb = window(
        why,
        numb_text,
        rules.SENSORY,
        after_block=True,
        length=settings.hematoma_window,
        from_reference=True,
    )
    sensory = rules.bilateral(numb, settings.laterality_merge)
    both = f"Both legs affected (one record, or left and right within {_merge(why)})"
    return [
        _r01(
            why,
            "hematoma_motor",
            weakness,
            side_condition(both + unknown, weak, motor),
            current(why, "R-01", motor, end),
        ),
        _r01(
            why,
            "hematoma_sensory",
            numbness,
            side_condition(both, numb, sensory),
            current(why, "R-01", sensory, end),
        ),
    ]


def _merge(why: Why) -> str:
    return hours_text(why.settings.laterality_merge)


def cauda_equina(why: Why) -> Entry:
    """R-01 trigger 3: sphincter or saddle signs, retention with a leg deficit, late retention,
    or leg pain on both sides, within the cauda equina window after the block."""
    ep, settings = why.episode, why.settings
    length = settings.cauda_equina_window
    sphincter_c, sphincter = window(
        why,
        "Saddle numbness or incontinence within {window} of the puncture",
        ("saddle_anaesthesia", "incontinence"),
        after_block=True,
        length=length,
        one_of=True,
    )
    s = why.scope
    retention = s.select(why.findings.of("urinary_retention"), after_block=True, length=length)
    legs = s.select(why.findings.of(*rules.LEG_SYMPTOMS), after_block=True, length=length)
    candidates = why.findings.of("urinary_retention", *rules.LEG_SYMPTOMS)
    together = condition(
        f"Urinary retention together with a leg deficit, both within {hours_text(length)} and "
        "after the expected block end",
        bool(retention and legs),
        window_lines(why, candidates, after_block=True, length=length),
        f"retention {'found' if retention else 'not found'}, leg deficit "
        f"{'found' if legs else 'not found'}",
        one_of=True,
    )
    late_after = settings.retention_after_block
    late = [
        f
        for f in retention
        if ep.block_ends is not None and f.when.latest > ep.block_ends + late_after
    ]
    late_c = condition(
        f"Urinary retention more than {hours_text(late_after)} after the expected block end",
        bool(late),
        window_lines(
            why,
            why.findings.of("urinary_retention"),
            after_block=True,
            length=length,
            extra=lambda f: {
                "late": ep.block_ends is not None and f.when.latest > ep.block_ends + late_after
            },
        ),
        one_of=True,
    )
    pain = s.select(why.findings.of("leg_pain"), after_block=True, length=length)
    radicular = rules.bilateral(pain, settings.laterality_merge)
    pain_c = side_condition(
        f"Leg pain on both sides within {hours_text(length)}, after the expected block end",
        pain,
        radicular,
    )
    pain_c["oneOf"] = True
    evidence = (
        list(sphincter) + late + radicular + ((retention + legs) if retention and legs else [])
    )
    ends = ep.punctured.latest + length
    return _r01(
        why,
        "cauda_equina",
        sphincter_c,
        together,
        late_c,
        pain_c,
        current(why, "R-01", evidence, ends),
    )


def abscess_deficit(why: Why) -> Entry:
    """R-01 trigger 4: a new deficit after the block with fever or raised markers (60 days)."""
    length = why.settings.abscess_window
    deficit_c, deficits = window(
        why,
        "A new neurological or sphincter deficit within {window} of the puncture",
        rules.DEFICITS,
        after_block=True,
        length=length,
    )
    infection_c, _ = window(
        why,
        "Fever or raised infection markers within {window} of the puncture",
        rules.INFECTION,
        after_block=False,
        length=length,
    )
    ends = why.episode.punctured.latest + length
    deficit_now = current(why, "R-01", deficits, ends)
    deficit_now["text"] += " (the deficit; the infection signs may be older)"
    return _r01(why, "abscess_deficit", deficit_c, infection_c, deficit_now)


def cord_infarct(why: Why) -> Entry:
    """R-01 trigger 5: new weakness of both legs within 48 h of an epidural steroid injection."""
    ep, settings = why.episode, why.settings
    length = settings.cord_infarct_window
    s = why.scope
    candidates = why.findings.of(*rules.WEAKNESS)
    early = [f for f in candidates if s.new(f) and s.by(f, length)]
    infarct = rules.weakness_red_flag(early, settings)
    unknown = " (or no side recorded)" if settings.unknown_laterality_weakness_is_red_flag else ""
    return _r01(
        why,
        "cord_infarct",
        plain(
            "The procedure is an epidural steroid injection",
            ep.procedure_class == model.ESI,
            ep.procedure_class,
        ),
        condition(
            f"New leg weakness within {hours_text(length)} of the injection (block or not)",
            bool(early),
            window_lines(why, candidates, after_block=False, length=length),
        ),
        side_condition(
            f"Both legs affected (one record, or left and right within {_merge(why)}){unknown}",
            early,
            infarct,
        ),
        current(why, "R-01", infarct, ep.punctured.latest + length),
    )


def recorded_diagnosis(why: Why) -> Entry:
    """R-01 trigger 6: a recorded spinal emergency diagnosis after the puncture (60 days)."""
    length = why.settings.abscess_window
    found_c, recorded = window(
        why,
        "A spinal emergency diagnosis recorded within {window} of the puncture",
        ("spinal_emergency_diagnosis",),
        after_block=False,
        length=length,
    )
    ends = why.episode.punctured.latest + length
    return _r01(why, "recorded_diagnosis", found_c, current(why, "R-01", recorded, ends))


def abscess(why: Why) -> list[Entry]:
    """R-02: infection signs from 24 h to 60 days after the puncture, with or without local ones."""
    ep, settings = why.episode, why.settings
    length = settings.abscess_window
    opens = ep.punctured.earliest + settings.abscess_start
    s = why.scope
    candidates = why.findings.of(*rules.INFECTION)
    infection = [
        f for f in s.select(candidates, after_block=False, length=length) if f.when.latest >= opens
    ]
    infection_c = condition(
        f"Fever or raised infection markers from {hours_text(settings.abscess_start)} to "
        f"{hours_text(length)} after the puncture",
        bool(infection),
        window_lines(
            why,
            candidates,
            after_block=False,
            length=length,
            extra=lambda f: {"lateEnough": f.when.latest >= opens},
        ),
    )
    local_c, local = window(
        why,
        "New back pain or insertion-site signs within {window} of the puncture",
        rules.LOCAL_SIGNS,
        after_block=False,
        length=length,
    )
    infection_now = current(why, "R-02", infection, ep.punctured.latest + length)
    infection_now["text"] += " (the infection signs)"
    no_local = dict(local_c, met=not local)
    no_local["text"] = "No new back pain or insertion-site signs (with them: the critical card)"
    return [
        Entry(
            "R-02",
            "abscess",
            headline(why.content, "abscess"),
            _R02,
            (infection_c, local_c, infection_now),
        ),
        Entry(
            "R-02",
            "fever_after_epidural",
            headline(why.content, "fever_after_epidural"),
            _R02,
            (infection_c, infection_now, no_local),
        ),
    ]


def episode_entries(why: Why) -> list[Entry]:
    """Every R-01 and R-02 pattern for one episode."""
    return [
        *hematoma(why),
        cauda_equina(why),
        abscess_deficit(why),
        cord_infarct(why),
        recorded_diagnosis(why),
        *abscess(why),
    ]


def unattributed_entry(
    episodes: Sequence[Episode],
    findings: Findings,
    others: Sequence[Match],
    content: Content,
    now: datetime,
) -> Entry:
    """R-04, over the whole record: recent red flags that no epidural's windows explain.

    ``findings`` is the whole record (R-04 reads it so), ``others`` every other rule's matches:
    a critical one attributes the red flags to an epidural, and R-04 stays silent.
    """
    settings = content.settings
    attributing = [m for m in others if m.indicator == model.CRITICAL]
    flags = list(
        {
            (f.source, f.concept): f for f in unattributed.recent_red_flags(findings, settings, now)
        }.values()
    )
    unexplained = [
        f
        for f in flags
        if not any(unattributed.attributable(f, e, findings, settings) for e in episodes)
    ]
    since = now - settings.red_flags_recent
    cur = Currency.of("R-04", settings, now)
    concepts = (
        "saddle_anaesthesia",
        "incontinence",
        "urinary_retention",
        *unattributed.LEG_DEFICITS,
    )
    recent_lines = [
        line(
            str(f.source),
            finding_text(f),
            {
                "recent": f.when.latest >= since and f.when.earliest <= now,
                "current": cur.current(f, None),
                "partOfPattern": f in flags,
            },
        )
        for f in findings.of(*concepts)
    ]
    attribution_lines = []
    for f in flags:
        explained = {
            f"explained by {e.source}": unattributed.attributable(f, e, findings, settings)
            for e in episodes
        }
        found = line(str(f.source), finding_text(f), explained)
        found["passed"] = not any(explained.values())
        attribution_lines.append(found)
    return Entry(
        "R-04",
        "unattributed_red_flags",
        headline(content, "unattributed_red_flags"),
        statement(unattributed.unattributed_red_flags),
        (
            condition(
                "No critical pattern of an epidural fired (R-01 or R-02 would explain the flags)",
                not attributing,
                [line(str(m.episode.source), f"{m.rule} {m.pattern}", {}) for m in attributing],
            ),
            condition(
                f"Red flags recorded in the last {hours_text(settings.red_flags_recent)} and "
                "still current: saddle numbness, incontinence, weakness of both legs, or "
                "retention with saddle numbness or a leg deficit",
                bool(flags),
                recent_lines,
                f"since {time_text(since)}",
            ),
            condition(
                "Outside every epidural's attribution window, or the epidural's date is missing "
                "or partial",
                bool(unexplained),
                attribution_lines,
            ),
        ),
    )
