"""The rules (clinical-spec §3.2-§3.3): every trigger, and each window just inside / just outside.

Default index procedures:
- ``esi()``: CPT 64483 at T0; block ends T0 + 8 h; cord-infarct window T0 + 48 h.
- ``catheter()``: labour epidural (CPT 01967) at T0, ropivacaine infusion T0..T0+12 h, removed at
  T0 + 14 h; block ends T0 + 16 h (last LA + 4 h); T_ref = T0 + 14 h.
Unless a test is about "now", it evaluates just after the chart's last record and no earlier than
three days after the puncture (``just_after(..., OPENED)``): the findings are then current
(clinical-spec §3.5), the catheter reminder has ended, and only the finding times decide.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from service.clinical import model, rules
from service.clinical.findings import Findings
from service.clinical.model import Episode, Finding, ResourceRef
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    CAUDA_EQUINA,
    CPT,
    FAECAL_INCONTINENCE,
    FEVER,
    HEAVY_LEGS,
    ICD10CM,
    LEG_PAIN,
    LOW_BACK_PAIN,
    MIN,
    NUMBNESS,
    PARAPLEGIA,
    RETENTION,
    SNOMED,
    T0,
    WARFARIN,
    WBC,
    WEAKNESS,
    condition,
    d,
    epidural_infusion,
    h,
    just_after,
    matches_of,
    med_admin,
    med_request,
    observation,
    pain_score,
    procedure,
    temperature,
)

LATE = d(90)
OPENED = d(
    3
)  # by default charts are opened 3 days after the puncture, or just after the last record
BLOCK_ESI = h(8)
BLOCK_CATH = h(16)
REMOVED = h(14)

Resources = list[dict[str, Any]]


def esi(**kw: Any) -> Resources:
    return [procedure("64483", id="esi", **kw)]


def catheter() -> Resources:
    return [
        procedure("01967", CPT, id="cath", end=REMOVED),
        epidural_infusion(h(0), h(12), id="inf"),
    ]


def patterns(content: Content, resources: Resources, now: datetime | None = None) -> set[str]:
    """Patterns at ``now``; by default just after the latest record, and no earlier than 3 days
    after the puncture, when the catheter reminder (R-07) of these charts has ended."""
    now = now if now is not None else just_after(resources, OPENED)
    return {m.pattern for m in matches_of(resources, content, now)}


def weakness(
    at: datetime | str | None, side: str | None = "bilateral", **kw: Any
) -> dict[str, Any]:
    return condition(WEAKNESS, onset=at, side=side, **kw)


def numbness(at: datetime | str, side: str | None = "bilateral", **kw: Any) -> dict[str, Any]:
    return condition(NUMBNESS, onset=at, side=side, **kw)


def back_pain(at: datetime) -> dict[str, Any]:
    return condition(LOW_BACK_PAIN, onset=at)


# -- haematoma, motor --


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (BLOCK_CATH - timedelta(hours=1), set()),
        (BLOCK_CATH, set()),  # exactly at the block end: not yet after it
        (BLOCK_CATH + MIN, {"hematoma_motor", "persisting_symptoms"}),
        (REMOVED + timedelta(days=7), {"hematoma_motor", "persisting_symptoms"}),
        # Outside R-01's window, bilateral weakness recorded now is still a red flag (R-04).
        (REMOVED + timedelta(days=7) + MIN, {"persisting_symptoms", "unattributed_red_flags"}),
    ],
)
def test_hematoma_motor_window_after_catheter(
    content: Content, at: datetime, expected: set[str]
) -> None:
    assert patterns(content, [*catheter(), weakness(at)]) == expected


def test_hematoma_window_runs_from_the_later_removal(content: Content) -> None:
    late_removal = [
        procedure("01967", CPT, end=d(3)),
        epidural_infusion(h(0), d(3) - timedelta(hours=1)),
    ]
    # 9 days after the puncture but 6 days after the removal: still inside T_ref + 7 d.
    assert "hematoma_motor" in patterns(content, [*late_removal, weakness(d(9))])
    assert "hematoma_motor" not in patterns(content, [*late_removal, weakness(d(10) + MIN)])


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        ("bilateral", {"hematoma_motor", "persisting_symptoms"}),
        (None, {"hematoma_motor", "persisting_symptoms"}),  # unknown side is a red flag
        ("left", {"persisting_symptoms"}),
        ("right", {"persisting_symptoms"}),
    ],
)
def test_weakness_laterality(content: Content, side: str | None, expected: set[str]) -> None:
    assert patterns(content, [*catheter(), weakness(h(20), side)]) == expected


def test_paraplegia_is_bilateral_weakness(content: Content) -> None:
    resources = [*catheter(), condition(PARAPLEGIA, onset=h(20))]
    assert patterns(content, resources) == {"hematoma_motor"}  # a red flag only, never R-05


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (timedelta(hours=24), {"hematoma_motor", "persisting_symptoms"}),
        (timedelta(hours=24) + MIN, {"persisting_symptoms"}),
    ],
)
def test_left_then_right_weakness_within_24_h_is_bilateral(
    content: Content, gap: timedelta, expected: set[str]
) -> None:
    resources = [*catheter(), weakness(h(20), "left"), weakness(h(20) + gap, "right")]
    assert patterns(content, resources) == expected


def test_icd_implied_sides_merge_into_bilateral_radicular_pain(content: Content) -> None:
    resources = [
        *esi(),
        condition("M79.604", ICD10CM, onset=h(20)),
        condition("M79.605", ICD10CM, onset=h(30)),
    ]
    assert patterns(content, resources) == {"cauda_equina", "persisting_symptoms"}


# -- haematoma, sensory --


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        ("bilateral", {"hematoma_sensory", "persisting_symptoms"}),
        ("left", {"persisting_symptoms"}),
        (None, {"persisting_symptoms"}),  # numbness of unknown side is not bilateral
    ],
)
def test_bilateral_numbness_is_hematoma_sensory(
    content: Content, side: str | None, expected: set[str]
) -> None:
    assert patterns(content, [*esi(), numbness(h(20), side)]) == expected


def test_left_and_right_numbness_records_merge(content: Content) -> None:
    resources = [*esi(), numbness(h(20), "left"), numbness(h(30), "right")]
    assert patterns(content, resources) == {"hematoma_sensory", "persisting_symptoms"}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (BLOCK_ESI, set()),
        (BLOCK_ESI + MIN, {"hematoma_sensory", "persisting_symptoms"}),
        (d(7), {"hematoma_sensory", "persisting_symptoms"}),
        (d(7) + MIN, {"persisting_symptoms"}),
    ],
)
def test_hematoma_sensory_window_after_esi(
    content: Content, at: datetime, expected: set[str]
) -> None:
    assert patterns(content, [*esi(), numbness(at)]) == expected


def test_bilateral_heaviness_is_not_a_red_flag(content: Content) -> None:
    resources = [*esi(), condition(HEAVY_LEGS, onset=d(2), side="bilateral")]
    assert patterns(content, resources) == {"persisting_symptoms"}


# -- cauda equina --


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (BLOCK_ESI - MIN, set()),
        (BLOCK_ESI + MIN, {"cauda_equina"}),
        (d(30), {"cauda_equina"}),
        (d(30) + MIN, {"unattributed_red_flags"}),  # outside R-01's window: not attributed
    ],
)
def test_incontinence_window(content: Content, at: datetime, expected: set[str]) -> None:
    assert patterns(content, [*esi(), condition(FAECAL_INCONTINENCE, onset=at)]) == expected


def test_saddle_anaesthesia_is_cauda_equina(content: Content) -> None:
    resources = [*esi(), condition("R20.0", ICD10CM, onset=d(3))]
    assert patterns(content, resources) == {"cauda_equina"}


def test_retention_with_any_leg_deficit_is_cauda_equina(content: Content) -> None:
    resources = [*esi(), condition(RETENTION, onset=h(20)), numbness(h(21), "left")]
    assert patterns(content, resources) == {"cauda_equina", "persisting_symptoms"}


def test_retention_with_a_deficit_before_the_block_end_is_not(content: Content) -> None:
    # Not a red flag: retention and numbness are both inside the block. It is the isolated
    # retention warning, because the numbness is expected from the block.
    resources = [*esi(), condition(RETENTION, onset=h(5)), numbness(h(6), "left")]
    assert patterns(content, resources) == {"isolated_retention"}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (h(20), {"isolated_retention"}),
        (BLOCK_ESI + timedelta(hours=24), {"isolated_retention"}),
        (BLOCK_ESI + timedelta(hours=24) + MIN, {"cauda_equina"}),
        (d(30), {"cauda_equina"}),
        (d(30) + MIN, set()),
    ],
)
def test_retention_alone_counts_only_24_h_after_the_block_end(
    content: Content, at: datetime, expected: set[str]
) -> None:
    assert patterns(content, [*esi(), condition(RETENTION, onset=at)]) == expected


def test_late_retention_after_catheter_uses_last_local_anaesthetic(content: Content) -> None:
    just_after = BLOCK_CATH + timedelta(hours=24) + MIN
    assert patterns(content, [*catheter(), condition(RETENTION, onset=just_after)]) == {
        "cauda_equina"
    }
    earlier = [*catheter(), condition(RETENTION, onset=just_after - 2 * MIN)]
    assert patterns(content, earlier) == {"isolated_retention"}


# -- abscess with deficit --


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (d(59), {"abscess_deficit", "fever_after_epidural"}),
        (d(60), {"abscess_deficit", "fever_after_epidural"}),
        (d(60) + MIN, set()),
    ],
)
def test_deficit_with_fever_window(content: Content, at: datetime, expected: set[str]) -> None:
    resources = [*esi(), numbness(at, "left"), temperature(38.5, at)]
    assert patterns(content, resources) == expected


def test_deficit_with_raised_wbc(content: Content) -> None:
    resources = [
        *esi(),
        numbness(d(20), "left"),
        observation(WBC, effective=d(20), value=15.2, unit="10*9/L"),
    ]
    assert patterns(content, resources) == {"abscess_deficit", "fever_after_epidural"}


# -- cord infarction after ESI --


@pytest.mark.parametrize(
    ("at", "side", "expected"),
    [
        (h(1), "bilateral", {"cord_infarct"}),
        (h(1), None, {"cord_infarct"}),
        (h(1), "left", set()),
        (h(-1), "bilateral", {"cord_infarct"}),  # 1 h clock-skew tolerance
        (h(-1) - MIN, "bilateral", set()),  # baseline: before the puncture
        (h(48), "bilateral", {"cord_infarct", "hematoma_motor", "persisting_symptoms"}),
        (h(48) + MIN, "bilateral", {"hematoma_motor", "persisting_symptoms"}),
    ],
)
def test_cord_infarct_within_48_h_of_esi(
    content: Content, at: datetime, side: str | None, expected: set[str]
) -> None:
    assert patterns(content, [*esi(), weakness(at, side)]) == expected


def test_no_cord_infarct_pattern_after_single_shot_without_steroid(content: Content) -> None:
    resources = [procedure("62322", CPT), weakness(h(1))]
    assert patterns(content, resources) == set()


def test_cord_infarct_after_interlaminar_injection_with_steroid(content: Content) -> None:
    resources = [
        procedure("62323", CPT),
        med_admin("10759", display="triamcinolone", at=T0, epidural=True),
        weakness(h(1)),
    ]
    assert patterns(content, resources) == {"cord_infarct"}


# -- recorded spinal emergency --


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (d(-10), set()),
        (h(2), {"recorded_diagnosis"}),
        (d(60), {"recorded_diagnosis"}),
        (d(60) + MIN, set()),
    ],
)
def test_recorded_spinal_emergency(content: Content, at: datetime, expected: set[str]) -> None:
    assert patterns(content, [*esi(), condition(CAUDA_EQUINA, onset=at)]) == expected


# -- uncertain times are inside the window --


def test_offset_less_onset_is_treated_as_possibly_after_the_block(content: Content) -> None:
    # 17:00 with no offset may be 03:00-07:00 UTC next day: after the 18:00 UTC block end.
    resources = [*esi(), weakness("2026-03-10T17:00:00")]
    assert "hematoma_motor" in patterns(content, resources)


def test_onset_date_only_is_treated_as_inside_the_window(content: Content) -> None:
    assert "hematoma_sensory" in patterns(content, [*esi(), numbness("2026-03-10")])


def test_finding_without_any_time_still_counts(content: Content) -> None:
    assert patterns(content, [*catheter(), weakness(None)], now=d(3)) == {
        "hematoma_motor",
        "persisting_symptoms",
    }


def test_future_dated_finding_is_ignored(content: Content) -> None:
    assert patterns(content, [*esi(), weakness(d(3))], now=d(2)) == set()


def test_text_only_red_flag_fires_the_same_rule(content: Content) -> None:
    resources = [*esi(), condition(None, text="can't lift either leg", onset=h(20))]
    now = just_after(resources, OPENED)
    found = [m for m in matches_of(resources, content, now) if m.pattern == "hematoma_motor"]
    assert len(found) == 1
    assert [(f.concept, f.laterality, f.from_text) for f in found[0].evidence] == [
        ("leg_weakness", "bilateral", True)
    ]


# -- R-02 --


@pytest.mark.parametrize(
    ("fever_at", "celsius", "expected"),
    [
        (h(24), 38.0, {"abscess"}),
        (h(24) - MIN, 38.0, set()),
        (h(23), 39.0, set()),
        (d(3), 37.9, set()),
        (d(60), 38.0, {"abscess"}),
        (d(60) + MIN, 38.0, set()),
    ],
)
def test_fever_with_back_pain_is_possible_abscess(
    content: Content, fever_at: datetime, celsius: float, expected: set[str]
) -> None:
    resources = [*esi(), back_pain(h(20)), temperature(celsius, fever_at)]
    assert patterns(content, resources) == expected


def test_fever_without_back_pain_is_a_warning(content: Content) -> None:
    resources = [*esi(), temperature(38.0, h(24), id="t1")]
    (match,) = matches_of(resources, content, just_after(resources, OPENED))
    assert (match.rule, match.pattern, match.indicator) == (
        "R-02",
        "fever_after_epidural",
        "warning",
    )
    assert [str(f.source) for f in match.evidence] == ["Observation/t1"]


def test_abscess_match_carries_fever_and_back_pain(content: Content) -> None:
    resources = [*esi(), back_pain(h(20)), temperature(38.6, d(4), id="t1")]
    (match,) = matches_of(resources, content, just_after(resources, OPENED))
    assert (match.rule, match.pattern, match.indicator) == ("R-02", "abscess", "critical")
    assert [f.concept for f in match.evidence] == ["back_pain", "fever"]


def test_fahrenheit_fever_threshold(content: Content) -> None:
    def run(value: float) -> set[str]:
        temp = observation("8310-5", effective=d(2), value=value, unit="[degF]")
        return patterns(content, [*esi(), back_pain(h(20)), temp])

    assert run(100.4) == {"abscess"}
    assert run(100.3) == set()


def test_coded_fever_and_raised_markers_count(content: Content) -> None:
    coded = [*esi(), back_pain(h(20)), condition(FEVER, onset=d(2))]
    crp = [*esi(), back_pain(h(20)), observation("1988-5", effective=d(2), value=1.5, unit="mg/dL")]
    assert patterns(content, coded) == {"abscess"}
    assert patterns(content, crp) == {"abscess"}


def test_insertion_site_signs_count_as_local_signs(content: Content) -> None:
    note = observation(
        None,
        text="Nursing note",
        effective=d(4),
        value_string="tender and red around epidural site",
    )
    resources = [*esi(), temperature(38.6, d(4)), note]
    assert patterns(content, resources) == {"abscess"}


def test_baseline_back_pain_does_not_make_fever_critical(content: Content) -> None:
    resources = [*esi(), back_pain(d(-100)), temperature(38.4, d(3))]
    assert patterns(content, resources) == {"fever_after_epidural"}


def test_excluded_temperature_does_not_count(content: Content) -> None:
    resources = [*esi(), back_pain(h(20)), temperature(39.0, d(2), status="entered-in-error")]
    assert patterns(content, resources) == set()


# -- R-05 --


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (BLOCK_ESI, set()),
        (BLOCK_ESI + MIN, {"persisting_symptoms"}),
        (d(14), {"persisting_symptoms"}),
        (d(14) + MIN, set()),
    ],
)
def test_persisting_leg_symptoms_window(content: Content, at: datetime, expected: set[str]) -> None:
    assert patterns(content, [*esi(), condition(LEG_PAIN, onset=at, side="right")]) == expected


def test_persisting_after_catheter_counts_from_last_local_anaesthetic(content: Content) -> None:
    assert patterns(content, [*catheter(), numbness(BLOCK_CATH, "left")]) == set()
    assert patterns(content, [*catheter(), numbness(BLOCK_CATH + MIN, "left")]) == {
        "persisting_symptoms"
    }


def test_baseline_findings_do_not_count(content: Content) -> None:
    resources = [
        *esi(),
        condition("23056005", onset=d(-120), side="left"),  # sciatica, the indication
        condition("M79.605", ICD10CM, onset=d(-120)),
        pain_score(7, h(-2)),
        pain_score(6, d(1)),
    ]
    assert patterns(content, resources) == set()


def test_onset_within_the_clock_skew_tolerance_is_new(content: Content) -> None:
    assert patterns(content, [*esi(), numbness(h(-1), "left", recorded=d(1))]) == set()
    # Before the puncture it is baseline: a later record on the same side is no worse and does
    # not count; a record on the other side (worsening, §3.1) does.
    same_side = [*esi(), numbness(h(-1) - MIN, "left"), numbness(d(1), "left")]
    assert patterns(content, same_side) == set()
    other_side = [*esi(), numbness(h(-1) - MIN, "left"), numbness(d(1), "right")]
    assert patterns(content, other_side) == {"persisting_symptoms"}


@pytest.mark.parametrize(
    ("baseline", "score", "fires"),
    [
        (3, 5, True),  # rise of 2
        (3, 4, False),
        (5, 7, True),
        (6, 7, True),  # 7 or more, and worse than before
        (None, 7, True),
        (None, 6, False),
        (8, 8, False),  # high but not worse
        (7, 6, False),
        (9, 10, True),
    ],
)
def test_pain_score_rise(content: Content, baseline: int | None, score: int, fires: bool) -> None:
    # The score's body site is a leg: a bare score never stands alone (R-05 amended 2026-12-01).
    resources = [*esi(), pain_score(score, h(20), id="now", site_text="Left leg")]
    if baseline is not None:
        resources.append(pain_score(baseline, h(-2), id="before"))
    matches = matches_of(resources, content, just_after(resources, OPENED))
    if not fires:
        assert matches == []
        return
    (match,) = matches
    assert (match.rule, match.pattern, match.indicator) == (
        "R-05",
        "persisting_symptoms",
        "warning",
    )
    suffix = f" (before the procedure {baseline}/10)" if baseline is not None else ""
    assert [(f.concept, f.value, str(f.source)) for f in match.evidence] == [
        ("pain_score", f"{score}/10{suffix}", "Observation/now")
    ]


def test_the_last_score_before_the_puncture_is_the_baseline(content: Content) -> None:
    resources = [*esi(), pain_score(2, d(-3)), pain_score(5, h(-2)), pain_score(6, h(20))]
    assert patterns(content, resources) == set()


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (BLOCK_ESI, set()),
        (BLOCK_ESI + MIN, {"persisting_symptoms"}),
        (d(14), {"persisting_symptoms"}),
        (d(14) + MIN, set()),
    ],
)
def test_pain_score_window(content: Content, at: datetime, expected: set[str]) -> None:
    leg = pain_score(8, at, site_text="right lower limb")
    assert patterns(content, [*esi(), pain_score(3, h(-2)), leg]) == expected


def test_no_persisting_rule_after_spinal_or_lumbar_puncture(content: Content) -> None:
    resources = [procedure("277762005", SNOMED), numbness(h(20), "left")]
    assert patterns(content, resources) == set()


def running_catheter() -> Resources:
    return [
        procedure("01967", CPT, id="cath", status="in-progress", period=True),
        epidural_infusion(h(0), id="inf"),
    ]


@pytest.mark.parametrize("side", ["left", "bilateral", None])
def test_weakness_during_running_infusion_is_a_dense_block_warning(
    content: Content, side: str | None
) -> None:
    resources = [*running_catheter(), weakness(h(10), side, id="w")]
    found = {(m.rule, m.pattern, m.indicator) for m in matches_of(resources, content, h(11))}
    assert found == {
        ("R-05", "dense_block_infusion", "warning"),
        ("R-07", "catheter_monitoring", "info"),
    }


def test_text_unable_to_straight_leg_raise_during_infusion(content: Content) -> None:
    text = condition(None, text="unable to straight leg raise", onset=h(10))
    assert patterns(content, [*running_catheter(), text], now=h(11)) == {
        "dense_block_infusion",
        "catheter_monitoring",
    }


def test_no_dense_block_warning_once_the_catheter_is_out(content: Content) -> None:
    assert "dense_block_infusion" not in patterns(content, [*catheter(), weakness(h(15), "left")])


def test_weakness_before_the_puncture_is_not_a_dense_block(content: Content) -> None:
    resources = [*running_catheter(), weakness(h(-1) - MIN, "left")]
    assert patterns(content, resources, now=h(11)) == {"catheter_monitoring"}


def test_running_infusion_has_no_block_end_so_only_monitoring(content: Content) -> None:
    resources = [
        procedure("01967", CPT, status="in-progress", period=True),
        epidural_infusion(h(0)),
        numbness(h(10), "left"),
    ]
    assert patterns(content, resources, now=h(11)) == {"catheter_monitoring"}


# -- R-07 --


def test_catheter_in_situ_gives_monitoring_info(content: Content) -> None:
    (match,) = matches_of(
        [procedure("01967", CPT, status="in-progress", period=True)], content, d(3)
    )
    assert (match.rule, match.pattern, match.indicator, match.evidence) == (
        "R-07",
        "catheter_monitoring",
        "info",
        (),
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [(h(24), {"catheter_monitoring"}), (h(24) + MIN, set()), (d(4), set())],
)
def test_presumed_in_situ_catheter(content: Content, now: datetime, expected: set[str]) -> None:
    # A completed catheter with only a start time is presumed in place for 24 h (§3.1 amended).
    assert patterns(content, [procedure("18946005", SNOMED)], now=now) == expected


@pytest.mark.parametrize(
    ("hours_after_removal", "expected"),
    [
        (0, {"catheter_monitoring"}),
        (23, {"catheter_monitoring"}),
        (24, {"catheter_monitoring"}),
        (25, set()),
    ],
)
def test_recently_removed_catheter(
    content: Content, hours_after_removal: float, expected: set[str]
) -> None:
    assert patterns(content, catheter(), now=h(14 + hours_after_removal)) == expected


@pytest.mark.parametrize(
    ("hours_after_removal", "expected"),
    [(25, {"catheter_monitoring"}), (48, {"catheter_monitoring"}), (49, set())],
)
def test_warfarin_extends_monitoring_to_48_h(
    content: Content, hours_after_removal: float, expected: set[str]
) -> None:
    resources = [*catheter(), med_admin(WARFARIN, display="warfarin 5 mg", at=h(2))]
    assert patterns(content, resources, now=h(14 + hours_after_removal)) == expected


def test_active_warfarin_order_extends_monitoring(content: Content) -> None:
    resources = [*catheter(), med_request(text="Warfarin 3 mg daily", authored=h(2))]
    assert patterns(content, resources, now=h(14 + 30)) == {"catheter_monitoring"}


def test_other_anticoagulants_do_not_extend_monitoring(content: Content) -> None:
    resources = [*catheter(), med_admin("854235", display="enoxaparin 40 mg", at=h(18))]
    assert patterns(content, resources, now=h(14 + 30)) == set()


def test_coded_warfarin_without_display_extends_monitoring(content: Content) -> None:
    resources = [*catheter(), med_admin(WARFARIN, at=h(2))]
    assert patterns(content, resources, now=h(14 + 30)) == {"catheter_monitoring"}


def test_no_monitoring_reminder_after_esi(content: Content) -> None:
    assert patterns(content, esi(), now=h(2)) == set()


# -- rule functions on hand-built episodes --


def _episode(block_ends: datetime | None, klass: str = model.ESI) -> Episode:
    return Episode(
        source=ResourceRef("Procedure", "p"),
        procedure_class=klass,
        label="x",
        punctured=When.at(T0),
        removed=None,
        catheter_in_situ=False,
        last_local_anaesthetic=None,
        block_ends=block_ends,
    )


def _finding(concept: str, at: datetime, side: str | None, rid: str) -> Finding:
    return Finding(concept, When.at(at), ResourceRef("Condition", rid), concept, laterality=side)


def test_bilateral_prefers_one_bilateral_record() -> None:
    both = _finding("leg_weakness", h(30), "bilateral", "b")
    left = _finding("leg_weakness", h(20), "left", "l")
    right = _finding("leg_weakness", h(21), "right", "r")
    merge = timedelta(hours=24)
    assert rules.bilateral([left, right, both], merge) == [both]
    assert rules.bilateral([left, right], merge) == [left, right]
    assert rules.bilateral([left], merge) == []


def test_red_flags_evidence_is_ordered_and_unique(content: Content) -> None:
    episode = _episode(h(8))
    found = Findings(
        (
            _finding("leg_weakness", h(20), "left", "l"),
            _finding("leg_weakness", h(22), "right", "r"),
            _finding("incontinence", h(23), None, "i"),
        ),
        (),
    )
    result = rules.red_flags(episode, found, content.settings, LATE)
    assert [(m.pattern, [f.source.id for f in m.evidence]) for m in result] == [
        ("hematoma_motor", ["l", "r"]),
        ("cauda_equina", ["i"]),
        ("cord_infarct", ["l", "r"]),
    ]


def test_rules_skip_findings_while_the_block_cannot_have_worn_off(content: Content) -> None:
    episode = _episode(None, model.CATHETER)
    found = Findings((_finding("leg_weakness", h(20), "bilateral", "w"),), ())
    assert rules.red_flags(episode, found, content.settings, LATE) == []
    assert rules.persisting_symptoms(episode, found, content.settings, LATE) == []
