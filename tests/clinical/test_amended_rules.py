"""Rules amended on 2026-12-01: R-05 pain scores, R-03 e) heparin course, the bounded catheter
presumption (§3.1) and coded negative values (§3.4).

Each test fails with the earlier rule: a bare pain-score rise was a leg symptom, one heparin dose
was a course, a completed catheter with only a start time stayed "in place" for five days, and a
coded "Negative"/"Absent"/"No" value or a normal interpretation still made a finding.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from service.clinical import rules
from service.clinical.antithrombotics import heparin_course
from service.clinical.findings import from_observation
from service.clinical.model import MedicationEvent, ResourceRef
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    CPT,
    LEG_PAIN,
    MIN,
    SNOMED,
    T0,
    WEAKNESS,
    cards_of,
    chart_of,
    condition,
    d,
    h,
    med_admin,
    med_request,
    observation,
    pain_score,
    procedure,
)
from tests.clinical.test_rules import Resources, esi

TICAGRELOR_90 = "1116635"  # catheter: no (ASRA)
HEPARIN_5000 = "heparin 5,000 units subcutaneous"


def all_patterns(content: Content, resources: Resources, now: datetime) -> set[str]:
    chart = replace(chart_of(resources, content, now), asra=content.asra)
    return {m.pattern for m in rules.evaluate(chart, content.settings)}


# -- a pain score grades leg pain only --


def test_a_bare_pain_score_rise_after_an_esi_is_no_leg_symptom(content: Content) -> None:
    # Issue 12: a rise from 0 to 2 gave "Leg numbness/heaviness persists ...".
    resources = [*esi(), pain_score(0, h(-2)), pain_score(2, h(20))]
    assert all_patterns(content, resources, h(21)) == set()


def test_a_pain_score_grades_a_leg_pain_finding_after_the_puncture(content: Content) -> None:
    # Leg pain recorded within the block (not itself evidence) makes the later score count.
    leg = condition(LEG_PAIN, onset=h(4), side="left")
    resources = [*esi(), leg, pain_score(0, h(-2)), pain_score(2, h(20), id="p")]
    chart = chart_of(resources, content, h(21))
    (match,) = rules.evaluate(chart, content.settings)
    assert match.pattern == "persisting_symptoms"
    assert [f.concept for f in match.evidence] == ["pain_score"]


def test_leg_pain_before_the_puncture_does_not_grade_a_score(content: Content) -> None:
    leg = condition(LEG_PAIN, onset=d(-60), side="left")
    resources = [*esi(), leg, pain_score(0, h(-2)), pain_score(2, h(20))]
    assert all_patterns(content, resources, h(21)) == set()


def test_a_score_whose_body_site_is_a_leg_counts(content: Content) -> None:
    resources = [*esi(), pain_score(0, h(-2)), pain_score(2, h(20), site_text="Left lower leg")]
    assert all_patterns(content, resources, h(21)) == {"persisting_symptoms"}


def test_a_score_whose_body_site_is_elsewhere_does_not(content: Content) -> None:
    resources = [*esi(), pain_score(0, h(-2)), pain_score(8, h(20), site_text="Lower back")]
    assert all_patterns(content, resources, h(21)) == set()


def test_no_pain_scores_after_a_labour_catheter(content: Content) -> None:
    # Issue 12: the same rise after a labour epidural. Even with leg pain recorded, the score
    # (which measures labour or wound pain) is not R-05 evidence after a catheter.
    labour = [procedure("01967", CPT, end=h(10))]
    leg = condition(LEG_PAIN, onset=h(2), side="left")
    scores = [pain_score(0, h(-2)), pain_score(2, d(1)), pain_score(9, d(1) + MIN)]
    chart = chart_of([*labour, leg, *scores], content, d(2))
    evidence = [f.concept for m in rules.evaluate(chart, content.settings) for f in m.evidence]
    assert "pain_score" not in evidence


# -- R-03 e): a heparin course is more than 4 days --


def _dose(at: datetime, *, administered: bool = True, in_progress: bool = False) -> MedicationEvent:
    return MedicationEvent(
        source=ResourceRef("MedicationAdministration", at.isoformat()),
        name="heparin",
        classes=frozenset({"antithrombotic"}),
        administered=administered,
        start=When.at(at),
        end=None,
        epidural_route=False,
        in_progress=in_progress,
    )


@pytest.mark.parametrize(
    ("doses", "course"),
    [
        ([d(-5)], False),  # one dose is not a course
        ([d(-5), d(-1)], False),  # 4 days first to last: not more than 4
        ([d(-5) - MIN, d(-1)], True),
        ([d(-6), d(-3)], False),  # more than 4 days ago, but ended 3 days before the puncture
        ([d(-6), d(-5), d(-4), d(-3), d(-2), h(-20)], True),
    ],
)
def test_heparin_course_spans_more_than_4_days(
    content: Content, doses: list[datetime], course: bool
) -> None:
    assert heparin_course([_dose(t) for t in doses], T0, content.settings) is course


def test_an_active_order_for_more_than_4_days_is_a_course(content: Content) -> None:
    settings = content.settings
    assert heparin_course([_dose(d(-5), administered=False, in_progress=True)], T0, settings)
    assert not heparin_course([_dose(d(-3), administered=False, in_progress=True)], T0, settings)
    assert not heparin_course([_dose(d(-5), administered=False)], T0, settings)  # completed


def test_a_single_heparin_dose_5_days_before_is_no_course(content: Content) -> None:
    # Issue 12: "Heparin for over 4 d without a platelet count" for one 5,000 U dose.
    resources = [*esi(), med_admin(text=HEPARIN_5000, at=d(-5))]
    assert "heparin_platelets" not in all_patterns(content, resources, h(2))


def test_a_heparin_course_without_platelets_is_flagged(content: Content) -> None:
    doses = [med_admin(text=HEPARIN_5000, at=d(-day)) for day in (6, 5, 4, 3, 2)]
    doses.append(med_admin(text=HEPARIN_5000, at=h(-12)))
    assert "heparin_platelets" in all_patterns(content, [*esi(), *doses], h(2))


def test_an_open_heparin_order_for_6_days_is_flagged(content: Content) -> None:
    order = med_request(text=HEPARIN_5000, authored=d(-6))
    assert "heparin_platelets" in all_patterns(content, [*esi(), order], h(2))


# -- §3.1: a completed catheter with only a start time --


def completed_epidural() -> Resources:
    return [procedure("18946005", SNOMED, id="epi")]  # performedDateTime T0, no end


def test_an_antiplatelet_two_days_later_is_not_given_with_a_catheter_in_place(
    content: Content,
) -> None:
    # Issue 12: "Ticagrelor given while epidural catheter is in place" two days later.
    dose = med_admin(TICAGRELOR_90, display="ticagrelor 90 mg", at=d(2))
    assert "antithrombotic_in_situ" not in all_patterns(
        content, [*completed_epidural(), dose], d(2)
    )


def test_within_the_presumed_time_the_conflict_says_removal_not_recorded(
    content: Content,
) -> None:
    dose = med_admin(TICAGRELOR_90, display="ticagrelor 90 mg", at=h(10))
    chart = replace(chart_of([*completed_epidural(), dose], content, h(11)), asra=content.asra)
    (conflict,) = [m for m in rules.evaluate(chart, content.settings) if m.rule == "R-03"]
    assert (conflict.pattern, conflict.indicator) == ("antithrombotic_in_situ", "warning")
    assert "fact_removal_not_recorded" in [f.key for f in conflict.facts]


def test_cards_of_a_presumed_catheter_say_removal_time_not_recorded(content: Content) -> None:
    dose = med_admin(TICAGRELOR_90, display="ticagrelor 90 mg", at=h(10))
    (card,) = cards_of([*completed_epidural(), dose], content, h(11))
    assert card["indicator"] == "warning"
    assert "removal time not recorded" in card["detail"]


def test_red_flag_windows_run_from_the_presumed_removal(content: Content) -> None:
    # T_ref is the presumed removal (T0 + 24 h): the haematoma window is never shortened.
    late = condition(WEAKNESS, onset=d(8) - timedelta(hours=1), side="bilateral")
    now = d(8)
    assert "hematoma_motor" in all_patterns(content, [*completed_epidural(), late], now)


# -- §3.4: coded negative values --

LEG_WEAKNESS_OBS = "713514005"


@pytest.mark.parametrize(
    ("value_code", "finding"),
    [
        ("260385009", False),  # Negative
        ("2667000", False),  # Absent
        ("373067005", False),  # No
        ("123456", True),  # any code outside the value set
    ],
)
def test_coded_negative_values_are_not_findings(
    content: Content, value_code: str, finding: bool
) -> None:
    resource = observation(WEAKNESS, SNOMED, effective=h(20), value_code=(value_code, SNOMED))
    found, _ = from_observation(resource, content.lexicon, content.settings, d(1))
    assert bool(found) is finding


@pytest.mark.parametrize(("flag", "finding"), [("N", False), ("A", True), (None, True)])
def test_a_normal_interpretation_of_a_sign_is_not_a_finding(
    content: Content, flag: str | None, finding: bool
) -> None:
    resource = observation(WEAKNESS, SNOMED, effective=h(20), interpretation=flag)
    found, _ = from_observation(resource, content.lexicon, content.settings, d(1))
    assert bool(found) is finding


def test_a_normal_flag_does_not_hide_a_measured_fever(content: Content) -> None:
    # Measurements are judged by their number; the flag only speaks for signs.
    resource = observation(effective=h(30), value=38.9, unit="Cel", interpretation="N", id="t")
    found, _ = from_observation(resource, content.lexicon, content.settings, d(2))
    assert [f.concept for f in found] == ["fever"]


def test_negative_values_are_v2_in_the_content(content: Content) -> None:
    codes = content.lexicon.codes.concepts["negative_value"]
    assert {(c.code, c.status) for c in codes} == {
        ("260385009", "V2"),
        ("2667000", "V2"),
        ("373067005", "V2"),
    }
