"""Findings from Conditions and Observations: exclusions, times, laterality, units, text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.clinical import findings
from service.clinical.model import Finding, PainScore, ResourceRef
from service.clinical.timing import UNKNOWN_START, When
from service.content import Content
from tests.clinical.conftest import (
    CRP,
    ESR,
    FAECAL_INCONTINENCE,
    HEAVY_LEGS,
    ICD10CM,
    NUMBNESS,
    PAIN_SCORE,
    PARAPLEGIA,
    RETENTION,
    SNOMED,
    T0,
    TEMPERATURE,
    WBC,
    WEAKNESS,
    condition,
    h,
    observation,
    pain_score,
    temperature,
)

NOW = h(48)


def from_condition(resource: dict[str, Any], content: Content) -> list[Finding]:
    return findings.from_condition(resource, content.lexicon, NOW)


def from_observation(
    resource: dict[str, Any], content: Content
) -> tuple[list[Finding], list[PainScore]]:
    return findings.from_observation(resource, content.lexicon, content.settings, NOW)


def one(found: list[Finding]) -> Finding:
    assert len(found) == 1, found
    return found[0]


# -- Conditions --


def test_coded_condition_becomes_a_finding(content: Content) -> None:
    resource = condition(WEAKNESS, id="w1", onset=h(20), display="Muscle weakness of limb")
    assert from_condition(resource, content) == [
        Finding(
            concept="leg_weakness",
            when=When.at(h(20)),
            source=ResourceRef("Condition", "w1"),
            label="Muscle weakness of limb",
            laterality=None,
            from_text=False,
            time_known=True,
            documented=When.at(h(20)),
            condition=True,
        )
    ]


def test_condition_about_something_else_is_not_a_finding(content: Content) -> None:
    # A procedure code (lumbar puncture) used as a Condition code: no finding concept.
    assert from_condition(condition("277762005", onset=h(20)), content) == []


@pytest.mark.parametrize(
    ("side", "expected"), [("left", "left"), ("right", "right"), ("bilateral", "bilateral")]
)
def test_body_site_snomed_laterality(content: Content, side: str, expected: str) -> None:
    assert one(from_condition(condition(WEAKNESS, onset=h(20), side=side), content)).laterality == (
        expected
    )


def test_left_and_right_body_sites_on_one_record_are_bilateral(content: Content) -> None:
    resource = condition(NUMBNESS, onset=h(20), side="left")
    resource["bodySite"].append({"coding": [{"system": SNOMED, "code": "24028007"}]})
    assert one(from_condition(resource, content)).laterality == "bilateral"


def test_body_site_text_gives_laterality(content: Content) -> None:
    resource = condition(NUMBNESS, onset=h(20), site_text="Left lower leg")
    assert one(from_condition(resource, content)).laterality == "left"


@pytest.mark.parametrize(
    ("code", "concept", "side"),
    [
        ("M79.604", "leg_pain", "right"),
        ("M79.605", "leg_pain", "left"),
        ("M79.606", "leg_pain", None),
        ("M54.32", "leg_pain", "left"),
        ("G83.11", "leg_weakness", "right"),
        ("G82.20", "paraplegia", "bilateral"),
    ],
)
def test_icd_codes_imply_laterality(
    content: Content, code: str, concept: str, side: str | None
) -> None:
    finding = one(from_condition(condition(code, ICD10CM, onset=h(20)), content))
    assert (finding.concept, finding.laterality) == (concept, side)


def test_snomed_paraplegia_is_bilateral_by_definition(content: Content) -> None:
    assert one(from_condition(condition(PARAPLEGIA, onset=h(20)), content)).laterality == (
        "bilateral"
    )


def test_implied_and_body_site_laterality_combine(content: Content) -> None:
    resource = condition("M79.605", ICD10CM, onset=h(20), side="right")
    assert one(from_condition(resource, content)).laterality == "bilateral"
    resource = condition("M79.605", ICD10CM, onset=h(20), side="left")
    assert one(from_condition(resource, content)).laterality == "left"


def test_laterality_in_the_code_text_of_a_coded_condition(content: Content) -> None:
    resource = condition(NUMBNESS, onset=h(20), text="Numbness of both legs")
    assert one(from_condition(resource, content)).laterality == "bilateral"


def test_text_only_condition_gives_every_concept_marked_from_text(content: Content) -> None:
    text = "both legs numb and can't pee since this morning"
    resource = condition(None, id="t1", onset=h(20), text=text)
    found = from_condition(resource, content)
    assert [(f.concept, f.laterality, f.from_text, f.label) for f in found] == [
        ("leg_numbness", "bilateral", True, text),
        ("urinary_retention", "bilateral", True, text),
    ]


def test_text_only_condition_reads_its_notes(content: Content) -> None:
    resource = condition(None, onset=h(20), text="Nursing concern", note="Left leg weak this pm")
    finding = one(from_condition(resource, content))
    assert (finding.concept, finding.laterality, finding.from_text) == (
        "leg_weakness",
        "left",
        True,
    )


def test_coded_display_is_read_as_text_when_the_code_is_unknown(content: Content) -> None:
    resource = condition("999999999", display="Weakness of right leg", onset=h(20))
    finding = one(from_condition(resource, content))
    assert (finding.concept, finding.laterality, finding.from_text) == (
        "leg_weakness",
        "right",
        True,
    )


def test_negated_text_condition_is_not_a_finding(content: Content) -> None:
    resource = condition(None, onset=h(20), text="denies leg numbness or urinary retention")
    assert from_condition(resource, content) == []


@pytest.mark.parametrize("status", ["entered-in-error", "refuted"])
def test_excluded_verification_status_is_ignored(content: Content, status: str) -> None:
    assert from_condition(condition(RETENTION, onset=h(20), verification=status), content) == []


@pytest.mark.parametrize(
    "status", ["provisional", "differential", "unconfirmed", "confirmed", None]
)
def test_uncertain_diagnoses_still_count(content: Content, status: str | None) -> None:
    found = from_condition(condition(RETENTION, onset=h(20), verification=status), content)
    assert [f.concept for f in found] == ["urinary_retention"]


def test_onset_falls_back_to_onset_period_then_recorded_date(content: Content) -> None:
    resource = condition(WEAKNESS, recorded=h(30))
    resource["onsetPeriod"] = {"start": "2026-03-11T04:00:00Z"}
    assert one(from_condition(resource, content)).when == When.at(
        datetime(2026, 3, 11, 4, tzinfo=UTC)
    )
    assert one(from_condition(condition(WEAKNESS, recorded=h(30)), content)).when == When.at(h(30))


def test_onset_wins_over_recorded_date(content: Content) -> None:
    resource = condition(WEAKNESS, onset=h(20), recorded=h(30))
    assert one(from_condition(resource, content)).when == When.at(h(20))


def test_missing_time_means_any_time_up_to_now(content: Content) -> None:
    finding = one(from_condition(condition(WEAKNESS), content))
    assert finding.when.latest == NOW
    assert finding.when.earliest == UNKNOWN_START and not finding.when.recorded
    assert finding.time_known is False


def test_partial_onset_is_a_span(content: Content) -> None:
    finding = one(from_condition(condition(WEAKNESS, onset="2026-03-11"), content))
    assert finding.when == When(
        datetime(2026, 3, 10, 10, tzinfo=UTC), datetime(2026, 3, 12, 13, 59, 59, tzinfo=UTC)
    )
    assert finding.time_known is True


# -- Observations: status and values --


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_excluded_observation_status_is_ignored(content: Content, status: str) -> None:
    assert from_observation(temperature(39.0, h(30), status=status), content) == ([], [])
    assert from_observation(pain_score(9, h(30), status=status), content) == ([], [])


@pytest.mark.parametrize("status", ["final", "preliminary", "amended", "registered"])
def test_other_observation_statuses_count(content: Content, status: str) -> None:
    found, _ = from_observation(temperature(39.0, h(30), status=status), content)
    assert [f.concept for f in found] == ["fever"]


@pytest.mark.parametrize(
    ("value", "unit", "fever"),
    [
        (38.0, "Cel", True),
        (37.9, "Cel", False),
        (39.4, "Cel", True),
        (100.4, "[degF]", True),
        (100.3, "[degF]", False),
        (101.0, "°F", True),
        (38.2, "°C", True),
        (311.5, "K", False),  # unknown unit: not guessed
    ],
)
def test_fever_threshold_with_unit_conversion(
    content: Content, value: float, unit: str, fever: bool
) -> None:
    found, scores = from_observation(
        observation(TEMPERATURE, id="t", effective=h(30), value=value, unit=unit), content
    )
    assert scores == []
    if fever:
        assert [(f.concept, f.value, f.label, f.source) for f in found] == [
            ("fever", f"{value:g} {unit}", "body_temperature", ResourceRef("Observation", "t"))
        ]
    else:
        assert found == []


def test_temperature_label_is_the_code_text(content: Content) -> None:
    resource = observation(TEMPERATURE, effective=h(30), value=38.5, unit="Cel", text="Temp")
    assert one(from_observation(resource, content)[0]).label == "Temp"


@pytest.mark.parametrize(
    ("value", "unit", "interpretation", "marker"),
    [
        (11.5, "10*9/L", None, True),
        (11.0, "10*9/L", None, False),
        (15.2, "10*3/uL", None, True),
        (11500, "/uL", None, True),
        (11000, "/uL", None, False),
        (9.0, "10*9/L", "H", True),
        (9.0, "10*9/L", "N", False),
        (9.0, "10*9/L", "HH", True),
    ],
)
def test_wbc_units_and_flags(
    content: Content, value: float, unit: str, interpretation: str | None, marker: bool
) -> None:
    resource = observation(
        WBC, effective=h(30), value=value, unit=unit, interpretation=interpretation
    )
    found, _ = from_observation(resource, content)
    expected = [("infection_marker", f"WBC {value:g} {unit}")] if marker else []
    assert [(f.concept, f.value) for f in found] == expected


@pytest.mark.parametrize(
    ("value", "unit", "interpretation", "marker"),
    [
        (85.0, "mg/L", None, True),
        (10.1, "mg/L", None, True),
        (10.0, "mg/L", None, False),
        (1.5, "mg/dL", None, True),  # 15 mg/L
        (0.9, "mg/dL", None, False),  # 9 mg/L
        (5.0, "mg/L", "H", True),
    ],
)
def test_crp_units_and_flags(
    content: Content, value: float, unit: str, interpretation: str | None, marker: bool
) -> None:
    resource = observation(
        CRP, effective=h(30), value=value, unit=unit, interpretation=interpretation
    )
    found, _ = from_observation(resource, content)
    expected = [("infection_marker", f"CRP {value:g} {unit}")] if marker else []
    assert [(f.concept, f.value) for f in found] == expected


def test_crp_flagged_high_without_a_value(content: Content) -> None:
    found, _ = from_observation(observation(CRP, effective=h(30), interpretation="H"), content)
    assert [(f.concept, f.value) for f in found] == [("infection_marker", "CRP raised")]


def test_esr_against_the_reference_range(content: Content) -> None:
    high, _ = from_observation(
        observation(ESR, effective=h(30), value=40, unit="mm/h", reference_high=20), content
    )
    normal, _ = from_observation(
        observation(ESR, effective=h(30), value=15, unit="mm/h", reference_high=20), content
    )
    assert [(f.concept, f.value) for f in high] == [("infection_marker", "ESR 40 mm/h")]
    assert normal == []


def test_pain_score_from_integer_and_quantity(content: Content) -> None:
    assert from_observation(pain_score(8, h(30), id="p1"), content) == (
        [],
        [PainScore(When.at(h(30)), 8.0, ResourceRef("Observation", "p1"))],
    )
    quantity = observation(PAIN_SCORE, id="p2", effective=h(31), value=6, unit="{score}")
    assert from_observation(quantity, content) == (
        [],
        [PainScore(When.at(h(31)), 6.0, ResourceRef("Observation", "p2"))],
    )


def test_observation_time_falls_back_to_issued(content: Content) -> None:
    found, _ = from_observation(
        observation(TEMPERATURE, issued=h(33), value=39, unit="Cel"), content
    )
    assert one(found).when == When.at(h(33))


# -- Observations: symptoms --


def test_coded_symptom_observation_with_body_site(content: Content) -> None:
    resource = observation(NUMBNESS, SNOMED, effective=h(30), side="right")
    finding = one(from_observation(resource, content)[0])
    assert (finding.concept, finding.laterality, finding.from_text) == (
        "leg_numbness",
        "right",
        False,
    )


def test_coded_value_of_a_generic_observation(content: Content) -> None:
    resource = observation(
        None, text="Symptom", effective=h(30), value_code=(HEAVY_LEGS, SNOMED), side="bilateral"
    )
    finding = one(from_observation(resource, content)[0])
    assert (finding.concept, finding.laterality) == ("leg_heaviness", "bilateral")


@pytest.mark.parametrize(
    "negation",
    [
        {"value_boolean": False},
        {"value_text": "Absent"},
        {"value_text": "No"},
        {"value_string": "none"},
    ],
)
def test_symptom_observation_with_a_negative_value_is_not_a_finding(
    content: Content, negation: dict[str, Any]
) -> None:
    resource = observation(FAECAL_INCONTINENCE, SNOMED, effective=h(30), **negation)
    assert from_observation(resource, content) == ([], [])


def test_symptom_observation_with_a_positive_value_is_a_finding(content: Content) -> None:
    resource = observation(FAECAL_INCONTINENCE, SNOMED, effective=h(30), value_boolean=True)
    assert [f.concept for f in from_observation(resource, content)[0]] == ["incontinence"]


def test_text_only_nursing_note_observation(content: Content) -> None:
    resource = observation(
        None,
        text="Nursing note",
        effective=h(30),
        value_string="tender and red around epidural site",
    )
    finding = one(from_observation(resource, content)[0])
    assert (finding.concept, finding.from_text) == ("site_infection", True)


def test_laterality_in_the_code_text_of_a_coded_observation(content: Content) -> None:
    resource = observation(NUMBNESS, SNOMED, effective=h(30), text="Numbness of both legs")
    assert one(from_observation(resource, content)[0]).laterality == "bilateral"


# -- collect --


def test_collect_sorts_by_time_then_source_and_drops_excluded(content: Content) -> None:
    conditions = [
        condition(RETENTION, id="c2", onset=h(30)),
        condition(WEAKNESS, id="c1", onset=h(30)),
        condition(WEAKNESS, id="c0", onset=h(10), verification="entered-in-error"),
    ]
    observations = [
        temperature(39.0, h(20), id="o1"),
        temperature(39.0, h(20), id="o2", status="cancelled"),
        pain_score(4, h(25), id="p2"),
        pain_score(5, T0 - (h(1) - T0), id="p1"),
    ]
    result = findings.collect(conditions, observations, content.lexicon, content.settings, NOW)
    assert [(str(f.source), f.concept) for f in result.findings] == [
        ("Observation/o1", "fever"),
        ("Condition/c1", "leg_weakness"),
        ("Condition/c2", "urinary_retention"),
    ]
    assert [str(s.source) for s in result.pain_scores] == ["Observation/p1", "Observation/p2"]
    assert [str(f.source) for f in result.of("urinary_retention", "fever")] == [
        "Observation/o1",
        "Condition/c2",
    ]
