"""The answer policy (one clear answer per call) and the acceptance scenarios (spec §6)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from service import content as content_module
from service.clinical import answer, model
from service.clinical.model import Episode, Finding, Match, ResourceRef
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    CPT,
    CRP,
    DEXAMETHASONE,
    ENOXAPARIN_40,
    FAECAL_INCONTINENCE,
    HEAVY_LEGS,
    ICD10CM,
    LIDOCAINE,
    LOW_BACK_PAIN,
    NUMBNESS,
    RETENTION,
    SNOMED,
    T0,
    TRIAMCINOLONE,
    WBC,
    WEAKNESS,
    brief,
    cards_of,
    condition,
    d,
    epidural_infusion,
    h,
    med_admin,
    observation,
    pain_score,
    procedure,
    temperature,
)

Summary = Callable[[str], str]


# -- plan() on hand-built matches --


def _episode(rid: str, punctured: datetime = T0) -> Episode:
    return Episode(
        source=ResourceRef("Procedure", rid),
        procedure_class=model.ESI,
        label=rid,
        punctured=When.at(punctured),
        removed=None,
        catheter_in_situ=False,
        last_local_anaesthetic=None,
        block_ends=punctured + timedelta(hours=8),
    )


EP = _episode("p1")


def _finding(rid: str, at: datetime, concept: str = "leg_weakness") -> Finding:
    return Finding(concept, When.at(at), ResourceRef("Condition", rid), concept)


RULES = {key: text.rule for key, text in content_module.load().wording.cards.items()}


def _match(pattern: str, indicator: str, episode: Episode = EP, *evidence: Finding) -> Match:
    # The content's rule for known patterns; made-up patterns get a rule of their own.
    return Match(
        pattern, RULES.get(pattern, f"rule-{pattern}"), indicator, episode, tuple(evidence)
    )


@pytest.fixture(scope="module")
def priority(content: Content) -> tuple[str, ...]:
    return content.wording.pattern_order


def test_content_priority_order(content: Content) -> None:
    assert content.wording.critical_priority == (
        "abscess_deficit",
        "cord_infarct",
        "hematoma_motor",
        "cauda_equina",
        "hematoma_sensory",
        "abscess",
        "unattributed_red_flags",
        "recorded_diagnosis",
    )
    order = content.wording.pattern_order
    assert order[: len(content.wording.critical_priority)] == content.wording.critical_priority
    assert order.index("fever_after_epidural") < order.index("persisting_symptoms")
    assert order.index("persisting_symptoms") < order.index("catheter_monitoring")


def test_no_matches_no_cards(priority: tuple[str, ...]) -> None:
    assert answer.plan([], priority) == []


def test_one_critical_card_named_by_the_most_urgent_pattern(priority: tuple[str, ...]) -> None:
    matches = [
        _match("abscess", "critical"),
        _match("cauda_equina", "critical"),
        _match("persisting_symptoms", "warning"),
        _match("hematoma_motor", "critical"),
        _match("catheter_monitoring", "info"),
        _match("fever_after_epidural", "warning"),
    ]
    (card,) = answer.plan(matches, priority)
    assert card.indicator == "critical"
    assert card.patterns == ("hematoma_motor", "cauda_equina", "abscess")
    assert card.primary.pattern == "hematoma_motor"
    assert [m.pattern for m in card.folded] == ["fever_after_epidural", "persisting_symptoms"]


def test_critical_from_several_episodes_names_the_most_recent_first(
    priority: tuple[str, ...],
) -> None:
    old, new = _episode("old", d(-30)), _episode("new", d(-1))
    matches = [_match("cauda_equina", "critical", old), _match("cauda_equina", "critical", new)]
    (card,) = answer.plan(matches, priority)
    assert card.patterns == ("cauda_equina",)
    assert [m.episode.source.id for m in card.matches] == ["new", "old"]
    assert card.episode.source.id == "new"


def test_warnings_one_card_per_pattern_and_no_info(priority: tuple[str, ...]) -> None:
    matches = [
        _match("fever_after_epidural", "warning"),
        _match("catheter_monitoring", "info"),
        _match("persisting_symptoms", "warning", _episode("a")),
        _match("persisting_symptoms", "warning", _episode("b", d(-2))),
    ]
    cards = answer.plan(matches, priority)
    # Content order between rules; within a rule the most recent episode first. The catheter
    # reminder is not shown next to a warning.
    assert [(c.indicator, c.patterns, len(c.matches)) for c in cards] == [
        ("warning", ("fever_after_epidural",), 1),
        ("warning", ("persisting_symptoms",), 2),
    ]
    assert [m.episode.source.id for m in cards[1].matches] == ["a", "b"]
    assert all(c.folded == () for c in cards)


def test_a_warning_whose_evidence_another_shows_is_folded_into_it(
    priority: tuple[str, ...],
) -> None:
    fever, headache = _finding("t", h(30), "fever"), _finding("hd", h(30), "headache")
    matches = [
        _match("fever_after_epidural", "warning", EP, fever),
        _match("atypical_headache", "warning", EP, headache, fever),
    ]
    (card,) = answer.plan(matches, priority)
    assert card.patterns == ("atypical_headache",)
    assert [m.pattern for m in card.folded] == ["fever_after_epidural"]


def test_other_info_cards_may_accompany_a_warning(priority: tuple[str, ...]) -> None:
    matches = [
        _match("persisting_symptoms", "warning"),
        _match("catheter_monitoring", "info"),
        _match("steroid_glucose", "info"),
    ]
    cards = answer.plan(matches, priority)
    assert [(c.indicator, c.patterns) for c in cards] == [
        ("warning", ("persisting_symptoms",)),
        ("info", ("steroid_glucose",)),
    ]


def test_info_only_when_nothing_more_urgent_and_capped(priority: tuple[str, ...]) -> None:
    matches = [_match(p, "info") for p in ("i1", "i2", "i3", "i1")]
    cards = answer.plan(matches, priority)
    assert [(c.indicator, c.patterns, len(c.matches)) for c in cards] == [
        ("info", ("i1",), 2),
        ("info", ("i2",), 1),
    ]
    assert [c.patterns for c in answer.plan(matches, priority, info_cap=1)] == [("i1",)]


def test_card_evidence_is_unique_and_in_time_order(priority: tuple[str, ...]) -> None:
    a, b, c = _finding("a", h(30)), _finding("b", h(20)), _finding("c", h(25), "fever")
    matches = [
        _match("hematoma_motor", "critical", EP, a, b),
        _match("abscess_deficit", "critical", EP, b, c),
        _match("persisting_symptoms", "warning", EP, a),
    ]
    (card,) = answer.plan(matches, priority)
    assert [f.source.id for f in card.evidence()] == ["b", "c", "a"]


# -- acceptance scenarios (clinical-spec §6) through the engine --


def labour_epidural() -> list[dict[str, Any]]:
    return [
        procedure("01967", CPT, id="labour", end=h(14), extra_codings=[("18946005", SNOMED)]),
        epidural_infusion(h(0), h(12), id="inf"),
    ]


def test_s1_bilateral_weakness_after_labour_epidural(content: Content, summary: Summary) -> None:
    resources = [
        *labour_epidural(),
        med_admin(ENOXAPARIN_40, id="enox", display="enoxaparin 40 mg", at=h(15.5)),
        condition(WEAKNESS, id="weak", onset=h(34), side="bilateral"),
        condition(RETENTION, id="ret", onset=h(35)),
    ]
    (card,) = cards_of(resources, content, h(36))
    assert (card["indicator"], card["summary"]) == ("critical", summary("hematoma_motor"))
    detail = card["detail"]
    cards = content.wording.cards
    assert f"Also matched:\n- {cards['cauda_equina'].headline}" in detail
    noted = detail.split("Also noted:\n", 1)[1].split("\n\n", 1)[0]
    assert noted.splitlines() == [
        f"- {cards['antithrombotic_after'].headline}",
        f"- {cards['persisting_symptoms'].headline}",
    ]
    assert (
        "Enoxaparin (low dose) given 1.5 h after the catheter removal; ASRA advises at least 4 h."
        in detail
    )
    assert "both legs" in detail
    assert (
        "`Condition/weak`, 2026-03-11 20:00 UTC; 34 h after the puncture; 20 h after catheter "
        "removal; 22 h after the last local anesthetic" in detail
    )
    assert (
        "enoxaparin 40 mg — `MedicationAdministration/enox`, given 2026-03-11 01:30 UTC; "
        "16 h after the puncture; 1.5 h after catheter removal" in detail
    )
    assert [s["label"] for s in card["suggestions"]] == [
        content.suggestions[k].label
        # One MRI choice for the whole card (§3.1 imaging region): the thoracic + lumbar study
        # of the haematoma pattern covers the cauda equina pattern's lumbar MRI.
        for k in ("mri_hematoma", "neurosurgery_referral")
    ]
    assert card["selectionBehavior"] == "any"


def tfesi() -> list[dict[str, Any]]:
    return [
        procedure("64483", id="tfesi"),
        med_admin(DEXAMETHASONE, display="dexamethasone 10 mg", at=T0, epidural=True),
        med_admin(LIDOCAINE, display="lidocaine 1%", at=T0, epidural=True),
    ]


def test_s2_numbness_within_the_expected_block_then_persisting(
    content: Content, summary: Summary
) -> None:
    early = condition(NUMBNESS, onset=h(0.5), side="right")
    assert cards_of([*tfesi(), early], content, h(3)) == []
    later = observation(NUMBNESS, SNOMED, effective=h(21.5), side="right")
    assert brief(cards_of([*tfesi(), early, later], content, h(22))) == [
        ("warning", summary("persisting_symptoms"))
    ]


def ilesi(days_ago: float, now: datetime) -> list[dict[str, Any]]:
    at = now - timedelta(days=days_ago)
    return [
        procedure("62323", CPT, id="ilesi", performed=at),
        med_admin(TRIAMCINOLONE, display="triamcinolone 80 mg", at=at, epidural=True),
    ]


def test_s3_bilateral_heaviness_day_5_then_abscess(content: Content, summary: Summary) -> None:
    now = d(5)
    base = [
        *ilesi(5, now),
        condition(HEAVY_LEGS, id="heavy", onset=d(2), side="bilateral"),
        temperature(37.2, now - timedelta(hours=2)),
    ]
    assert brief(cards_of(base, content, now)) == [("warning", summary("persisting_symptoms"))]
    worse = [
        *base,
        temperature(38.4, now - timedelta(hours=1), id="t2"),
        observation(
            CRP,
            id="crp",
            effective=now - timedelta(hours=1),
            value=85,
            unit="mg/L",
            interpretation="H",
        ),
        condition(LOW_BACK_PAIN, id="lbp", onset=d(4)),
    ]
    (card,) = cards_of(worse, content, now)
    assert (card["indicator"], card["summary"]) == ("critical", summary("abscess"))
    assert content.wording.cards["persisting_symptoms"].headline in card["detail"]
    assert [s["label"] for s in card["suggestions"]] == [
        content.suggestions[k].label
        for k in (
            "mri_abscess",
            "mri_hematoma",  # the alternative without contrast: imaging never waits for it
            "neurosurgery_referral",
            "infectious_disease_referral",
            "anesthesia_referral",
        )
    ]


def test_s4_thoracic_catheter_in_situ_fever_and_site_signs(
    content: Content, summary: Summary
) -> None:
    now = d(4)
    resources = [
        procedure("427060008", SNOMED, id="thoracic", status="in-progress", period=True),
        temperature(38.6, now - timedelta(hours=1)),
        observation(WBC, effective=now - timedelta(hours=1), value=15.2, unit="10*9/L"),
        observation(CRP, effective=now - timedelta(hours=1), value=120, unit="mg/L"),
        observation(
            None,
            text="Nursing note",
            effective=now - timedelta(hours=3),
            value_string="tender and red around epidural site",
        ),
        med_admin("1364445", id="apix", display="apixaban 5 mg", at=now - timedelta(hours=2)),
    ]
    (card,) = cards_of(resources, content, now)
    assert (card["indicator"], card["summary"]) == ("critical", summary("abscess"))
    assert "apixaban 5 mg — `MedicationAdministration/apix`" in card["detail"]
    assert "catheter presumed still in place" in card["detail"]
    assert content.wording.text_evidence_note in card["detail"]


def caudal(now: datetime, days_ago: float) -> dict[str, Any]:
    return procedure("62322", CPT, id="caudal", performed=now - timedelta(days=days_ago))


def test_s5_baseline_symptoms_no_card_then_new_weakness(content: Content, summary: Summary) -> None:
    now = d(1)
    base = [
        caudal(now, 1),
        condition("23056005", onset=d(-120), side="left"),
        condition("M79.605", ICD10CM, onset=d(-120)),
        pain_score(7, h(-2)),
        pain_score(6, now - timedelta(hours=1)),
    ]
    assert cards_of(base, content, now) == []
    left = condition(WEAKNESS, onset=now - timedelta(hours=1), side="left")
    assert brief(cards_of([*base, left], content, now)) == [
        ("warning", summary("persisting_symptoms"))
    ]
    both = condition(WEAKNESS, onset=now - timedelta(hours=1), side="bilateral")
    assert brief(cards_of([*base, both], content, now)) == [("critical", summary("hematoma_motor"))]


def test_s6_procedure_45_days_ago(content: Content, summary: Summary) -> None:
    now = d(45)
    leg = condition("10601006", onset=now - timedelta(hours=2), side="right")
    assert cards_of([caudal(now, 45), leg], content, now) == []
    infection = [
        caudal(now, 45),
        temperature(38.3, now - timedelta(hours=1)),
        condition(LOW_BACK_PAIN, onset=now - timedelta(hours=5)),
    ]
    assert brief(cards_of(infection, content, now)) == [("critical", summary("abscess"))]


def test_s6c_red_flags_outside_the_windows_still_critical(content: Content) -> None:
    now = d(45)
    resources = [
        caudal(now, 45),
        condition("R33.9", ICD10CM, onset=now - timedelta(hours=3)),
        condition(None, text="numb between the legs", onset=now - timedelta(hours=3)),
        temperature(36.8, now - timedelta(hours=1)),
    ]
    (card,) = cards_of(resources, content, now)
    assert (card["indicator"], card["summary"]) == (
        "critical",
        content.wording.cards["unattributed_red_flags"].summary,
    )
    assert "not attributed" in card["detail"]


def test_s7_text_only_procedure_and_red_flags(content: Content, summary: Summary) -> None:
    now = h(30)
    text_procedure = procedure(
        None, id="p", text="L4-5 interlaminar epidural steroid injection, fluoro"
    )
    flags = condition(None, text="both legs numb and can't pee since this morning", onset=h(24))
    (card,) = cards_of([text_procedure, flags], content, now)
    assert (card["indicator"], card["summary"]) == ("critical", summary("cauda_equina"))
    assert content.wording.cards["hematoma_sensory"].headline in card["detail"]
    assert content.wording.text_evidence_note in card["detail"]
    negated = condition(None, text="denies leg numbness or urinary retention", onset=h(24))
    assert cards_of([text_procedure, negated], content, now) == []


def test_s8_entered_in_error_resources(content: Content, summary: Summary) -> None:
    now = h(32)
    voided = procedure("18946005", SNOMED, status="entered-in-error")
    weak = condition(WEAKNESS, onset=h(30), side="bilateral")
    assert cards_of([voided, weak], content, now) == []

    valid = procedure("01967", CPT, end=h(10))
    corrected = [
        valid,
        condition(RETENTION, onset=h(30), verification="entered-in-error"),
        temperature(39.0, h(30), status="entered-in-error"),
    ]
    assert brief(cards_of(corrected, content, now)) == [("info", summary("catheter_monitoring"))]
    still_red = [*corrected, condition(FAECAL_INCONTINENCE, onset=h(31))]
    assert brief(cards_of(still_red, content, now)) == [("critical", summary("cauda_equina"))]


def test_s9_unilateral_flare_then_bilateral_weakness_after_tfesi(
    content: Content, summary: Summary
) -> None:
    now = h(20)
    flare = [
        *tfesi(),
        pain_score(5, h(-1)),
        pain_score(8, h(19)),
        condition("M79.605", ICD10CM, onset=h(18)),
    ]
    assert brief(cards_of(flare, content, now)) == [("warning", summary("persisting_symptoms"))]
    weak = condition(WEAKNESS, onset=h(1), side="bilateral", text="can't lift either leg")
    (card,) = cards_of([*flare, weak], content, now)
    assert (card["indicator"], card["summary"]) == ("critical", summary("cord_infarct"))
    assert [s["label"] for s in card["suggestions"]] == [
        content.suggestions[k].label
        for k in ("mri_cord", "neurology_referral", "neurosurgery_referral")
    ]


def test_unknown_side_weakness_says_so_on_the_card(content: Content, summary: Summary) -> None:
    resources = [*labour_epidural(), condition(WEAKNESS, onset=h(20))]
    (card,) = cards_of(resources, content, h(21))
    assert (card["indicator"], card["summary"]) == ("critical", summary("hematoma_motor"))
    assert content.wording.phrases["laterality_unknown_weakness"] in card["detail"]


def test_dense_block_during_infusion_is_one_warning_card(
    content: Content, summary: Summary
) -> None:
    resources = [
        procedure("01967", CPT, status="in-progress", period=True),
        epidural_infusion(h(0)),
        condition(WEAKNESS, onset=h(6), side="left"),
    ]
    assert brief(cards_of(resources, content, h(7))) == [
        ("warning", summary("dense_block_infusion"))
    ]


def test_no_index_procedure_no_cards(content: Content) -> None:
    resources = [
        procedure("27447", CPT),
        condition(WEAKNESS, onset=h(20), side="bilateral"),
        condition(RETENTION, onset=h(20)),
    ]
    assert cards_of(resources, content, h(21)) == []
