"""Engine invariants: corrections, input order and coding never change the answer wrongly.

- Adding an ``entered-in-error`` copy of any resource never changes the cards (safety note 7).
- Shuffling the resources never changes the cards (uuids aside).
- A text-only version of a coded red flag still yields a critical card with the same summary
  (clinical-spec §3.4: text never downgrades a red flag).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from service.content import Content
from tests.clinical.conftest import (
    CAUDA_EQUINA,
    CPT,
    DEXAMETHASONE,
    ENOXAPARIN_40,
    FAECAL_INCONTINENCE,
    FEVER,
    HEAVY_LEGS,
    ICD10CM,
    LIDOCAINE,
    LOW_BACK_PAIN,
    NUMBNESS,
    PARAPLEGIA,
    RETENTION,
    SNOMED,
    T0,
    TRIAMCINOLONE,
    WARFARIN,
    WBC,
    WEAKNESS,
    brief,
    cards_of,
    condition,
    d,
    entered_in_error,
    epidural_infusion,
    h,
    med_admin,
    med_request,
    observation,
    pain_score,
    procedure,
    temperature,
)

Resources = list[dict[str, Any]]
Scenario = Callable[[], tuple[Resources, datetime]]


def s1_labour_hematoma() -> tuple[Resources, datetime]:
    return [
        procedure("01967", CPT, id="labour", end=h(14), extra_codings=[("18946005", SNOMED)]),
        epidural_infusion(h(0), h(12), id="inf"),
        med_admin(ENOXAPARIN_40, id="enox", display="enoxaparin 40 mg", at=h(15.5)),
        condition(WEAKNESS, id="weak", onset=h(34), side="bilateral"),
        condition(RETENTION, id="ret", onset=h(35)),
    ], h(36)


def s3b_abscess_after_ilesi() -> tuple[Resources, datetime]:
    return [
        procedure("62323", CPT, id="ilesi"),
        med_admin(TRIAMCINOLONE, id="tri", display="triamcinolone 80 mg", at=T0, epidural=True),
        condition(HEAVY_LEGS, id="heavy", onset=d(2), side="bilateral"),
        temperature(38.4, d(5) - timedelta(hours=1), id="t1"),
        observation(
            "1988-5",
            id="crp",
            effective=d(5) - timedelta(hours=1),
            value=85,
            unit="mg/L",
            interpretation="H",
        ),
        condition(LOW_BACK_PAIN, id="lbp", onset=d(4)),
    ], d(5)


def s4_thoracic_in_situ() -> tuple[Resources, datetime]:
    return [
        procedure("427060008", SNOMED, id="thoracic", status="in-progress", period=True),
        temperature(38.6, d(4) - timedelta(hours=1), id="t"),
        observation(WBC, id="wbc", effective=d(4) - timedelta(hours=1), value=15.2, unit="10*9/L"),
        observation(
            None,
            id="note",
            text="Nursing note",
            effective=d(4) - timedelta(hours=3),
            value_string="tender and red around epidural site",
        ),
        med_admin("1364445", id="apix", display="apixaban 5 mg", at=d(4) - timedelta(hours=2)),
        med_request("1364445", id="apix-order", display="apixaban 5 mg", authored=d(3)),
    ], d(4)


def s7_text_only() -> tuple[Resources, datetime]:
    return [
        procedure(None, id="p", text="L4-5 interlaminar epidural steroid injection, fluoro"),
        condition(
            None, id="c", text="both legs numb and can't pee since this morning", onset=h(24)
        ),
        condition(None, id="n", text="denies back pain", onset=h(25)),
    ], h(30)


def s9b_cord_infarct() -> tuple[Resources, datetime]:
    return [
        procedure("64483", id="tfesi"),
        med_admin(DEXAMETHASONE, id="dex", display="dexamethasone 10 mg", at=T0, epidural=True),
        med_admin(LIDOCAINE, id="lido", display="lidocaine 1%", at=T0, epidural=True),
        pain_score(5, h(-1), id="p0"),
        pain_score(8, h(19), id="p1"),
        condition("M79.605", ICD10CM, id="leg", onset=h(18)),
        condition(WEAKNESS, id="weak", onset=h(1), side="bilateral", text="can't lift either leg"),
    ], h(20)


def s2b_warning() -> tuple[Resources, datetime]:
    return [
        procedure("64483", id="tfesi"),
        med_admin(DEXAMETHASONE, id="dex", display="dexamethasone 10 mg", at=T0, epidural=True),
        condition(NUMBNESS, id="early", onset=h(0.5), side="right"),
        observation(NUMBNESS, SNOMED, id="late", effective=h(21.5), side="right"),
    ], h(22)


def two_episodes_warnings() -> tuple[Resources, datetime]:
    return [
        procedure("64483", id="old", performed=d(-10)),
        procedure("62322", CPT, id="new"),
        condition("10601006", id="pain", onset=h(20), side="left"),
        temperature(38.3, d(2), id="t"),
        med_admin(WARFARIN, id="warf", display="warfarin 5 mg", at=d(1)),
    ], d(3)


def info_catheter() -> tuple[Resources, datetime]:
    return [
        procedure("01967", CPT, id="cath", end=h(10)),
        procedure("18946005", SNOMED, id="cath2", performed=d(-2), end=d(-2) + timedelta(hours=5)),
        condition(RETENTION, id="ret", onset=h(30), verification="entered-in-error"),
        # Warfarin started after removal: the 48 h monitoring window, no timing conflict.
        med_admin(WARFARIN, id="warf", display="warfarin", at=h(12)),
        temperature(37.5, h(20), id="afebrile"),
    ], h(32)


def dense_block() -> tuple[Resources, datetime]:
    return [
        procedure("01967", CPT, id="cath", status="in-progress", period=True),
        epidural_infusion(h(0), id="inf"),
        med_admin(LIDOCAINE, id="bolus", at=h(3), epidural=True),
        condition(WEAKNESS, id="weak", onset=h(6), side="left"),
        condition(NUMBNESS, id="numb", onset=h(6), side="right"),
    ], h(7)


SCENARIOS: dict[str, Scenario] = {
    "s1": s1_labour_hematoma,
    "s3b": s3b_abscess_after_ilesi,
    "s4": s4_thoracic_in_situ,
    "s7": s7_text_only,
    "s9b": s9b_cord_infarct,
    "s2b": s2b_warning,
    "two-episodes": two_episodes_warnings,
    "info": info_catheter,
    "dense": dense_block,
}
EXPECTED_INDICATORS = {
    "s1": ["critical"],
    "s3b": ["critical"],
    "s4": ["critical"],
    "s7": ["critical"],
    "s9b": ["critical"],
    "s2b": ["warning"],
    "two-episodes": ["warning", "warning"],
    "info": ["info"],
    "dense": ["warning"],
}


def without_uuids(value: Any) -> Any:
    """The cards with every ``uuid`` member removed (they are random in production)."""
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value


def output(resources: Resources, content: Content, now: datetime) -> Any:
    return without_uuids(cards_of(resources, content, now))


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenarios_give_the_expected_indicators(content: Content, name: str) -> None:
    resources, now = SCENARIOS[name]()
    assert [c["indicator"] for c in cards_of(resources, content, now)] == EXPECTED_INDICATORS[name]


@pytest.mark.parametrize("name", SCENARIOS)
def test_entered_in_error_copy_of_any_resource_changes_nothing(content: Content, name: str) -> None:
    resources, now = SCENARIOS[name]()
    expected = output(resources, content, now)
    for i, resource in enumerate(resources):
        copy = entered_in_error(resource, f"eie-{i}")
        for position in (0, len(resources)):
            changed = list(resources)
            changed.insert(position, copy)
            assert output(changed, content, now) == expected, (resource["id"], position)
    every = [entered_in_error(r, f"eie-all-{i}") for i, r in enumerate(resources)]
    assert output([*every, *resources], content, now) == expected


@pytest.mark.parametrize("name", SCENARIOS)
def test_resource_order_changes_nothing(content: Content, name: str) -> None:
    resources, now = SCENARIOS[name]()
    expected = output(resources, content, now)
    rng = random.Random(20261123)
    for _ in range(6):
        shuffled = list(resources)
        rng.shuffle(shuffled)
        assert output(shuffled, content, now) == expected
    assert output(list(reversed(resources)), content, now) == expected


def test_uuids_are_the_only_thing_ignored(content: Content) -> None:
    resources, now = s1_labour_hematoma()
    cards = cards_of(resources, content, now)
    uuids = [cards[0]["uuid"], *(s["uuid"] for s in cards[0]["suggestions"])]
    assert uuids == [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, len(uuids) + 1)]
    assert "uuid" not in str(without_uuids(cards))


# -- text-only versions of coded red flags --


TEXT_TWINS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    (
        "bilateral weakness",
        [condition(WEAKNESS, id="f", onset=h(20), side="bilateral")],
        [condition(None, id="f", onset=h(20), text="weakness of both legs")],
    ),
    (
        "weakness, side unknown",
        [condition(WEAKNESS, id="f", onset=h(20))],
        [condition(None, id="f", onset=h(20), text="can't lift legs")],
    ),
    (
        "paraplegia",
        [condition(PARAPLEGIA, id="f", onset=h(20))],
        [condition(None, id="f", onset=h(20), text="paraplegic since this morning")],
    ),
    (
        "bilateral numbness",
        [condition(NUMBNESS, id="f", onset=h(20), side="bilateral")],
        [condition(None, id="f", onset=h(20), text="both legs numb")],
    ),
    (
        "retention with leg numbness",
        [
            condition(RETENTION, id="f", onset=h(20)),
            condition(NUMBNESS, id="g", onset=h(20), side="left"),
        ],
        [condition(None, id="f", onset=h(20), text="can\u2019t pee, left leg numb")],
    ),
    (
        "faecal incontinence",
        [condition(FAECAL_INCONTINENCE, id="f", onset=h(20))],
        [
            observation(
                None,
                id="f",
                text="Nursing note",
                effective=h(20),
                value_string="incontinent of faeces overnight",
            )
        ],
    ),
    (
        "saddle anaesthesia",
        [condition("R20.0", ICD10CM, id="f", onset=h(20))],
        [condition(None, id="f", onset=h(20), text="perineal numbness")],
    ),
    (
        "recorded cauda equina syndrome",
        [condition(CAUDA_EQUINA, id="f", onset=d(3))],
        [condition(None, id="f", onset=d(3), text="MRI: cauda equina syndrome")],
    ),
    (
        "fever with back pain",
        [condition(FEVER, id="f", onset=d(2)), condition(LOW_BACK_PAIN, id="g", onset=d(2))],
        [condition(None, id="f", onset=d(2), text="febrile with new back pain")],
    ),
]


@pytest.mark.parametrize(("name", "coded", "text"), TEXT_TWINS, ids=[t[0] for t in TEXT_TWINS])
def test_text_only_red_flag_gives_the_same_critical_card(
    content: Content, name: str, coded: Resources, text: Resources
) -> None:
    index = [procedure("62322", CPT, id="p")]
    now = d(3) + timedelta(hours=1)  # every twin's record is still current (§3.5)
    coded_cards = cards_of([*index, *coded], content, now)
    text_cards = cards_of([*index, *text], content, now)
    assert [c["indicator"] for c in coded_cards] == ["critical"]
    assert brief(text_cards) == brief(coded_cards)
    assert content.wording.text_evidence_note in text_cards[0]["detail"]
    assert content.wording.text_evidence_note not in coded_cards[0]["detail"]


def test_text_only_procedure_gives_the_same_card_as_the_coded_one(content: Content) -> None:
    flags = [condition(WEAKNESS, id="f", onset=h(20), side="bilateral")]
    coded = cards_of([procedure("01967", CPT, id="p", end=h(10)), *flags], content, d(1))
    text = cards_of(
        [procedure(None, id="p", text="Labour epidural", end=h(10)), *flags], content, d(1)
    )
    assert [c["indicator"] for c in coded] == ["critical"]
    assert brief(text) == brief(coded)


def test_procedure_without_time_does_not_hide_red_flags(content: Content) -> None:
    resources = [
        procedure("01967", CPT, performed=None),
        condition(WEAKNESS, onset=h(20), side="bilateral"),
    ]
    assert [c["indicator"] for c in cards_of(resources, content, d(1))] == ["critical"]
