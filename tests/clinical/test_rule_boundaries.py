"""Boundaries of the complete rule set (R-03, R-04, R-06, R-08, R-09, R-10, R-11).

Each window and threshold of ``cards/settings.yaml`` / ``cards/asra.yaml`` is tested one minute
(or one unit) inside and one minute outside, asserting the exact pattern ids. R-03 needs the ASRA
table, so these tests evaluate a chart that carries ``content.asra`` (as the engine does).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from service.clinical import rules
from service.content import Content
from tests.clinical.conftest import (
    CPT,
    ENOXAPARIN_40,
    FAECAL_INCONTINENCE,
    LOINC,
    LOW_BACK_PAIN,
    MIN,
    RETENTION,
    T0,
    UCUM,
    WARFARIN,
    chart_of,
    condition,
    d,
    epidural_infusion,
    h,
    just_after,
    med_admin,
    observation,
    procedure,
)
from tests.clinical.test_rules import BLOCK_CATH, OPENED, REMOVED, Resources, catheter, esi

APIXABAN_5 = "1364445"
INR = "6301-6"
GLUCOSE = "2345-7"
HEADACHE = "25064002"
DIABETES = "73211009"
DIABETES_INSULIN = "237599002"
ESI_CERVICAL = "64479"


def patterns(content: Content, resources: Resources, now: datetime | None = None) -> set[str]:
    """Pattern ids of every match, with the ASRA table loaded (R-03 runs); by default at
    ``just_after`` the chart's last record, as in test_rules."""
    now = now if now is not None else just_after(resources, OPENED)
    chart = replace(chart_of(resources, content, now), asra=content.asra)
    return {m.pattern for m in rules.evaluate(chart, content.settings)}


# R-03's window ends 48 h after the catheter's removal (clinical-spec §3.5): its tests open the
# chart inside it, and leave the catheter reminder of the same hours out.
IN_R03_WINDOW = REMOVED + timedelta(hours=47)


def r03(content: Content, resources: Resources) -> set[str]:
    """R-03 (and any other non-reminder) patterns while R-03's window is open."""
    return patterns(content, resources, now=IN_R03_WINDOW) - {"catheter_monitoring"}


def glucose(value: float, at: datetime, unit: str = "mg/dL") -> dict[str, Any]:
    return observation(GLUCOSE, LOINC, effective=at, value=value, unit=unit)


def inr(value: float, at: datetime) -> dict[str, Any]:
    resource = observation(INR, LOINC, effective=at, value=value)
    resource["valueQuantity"]["system"] = UCUM
    return resource


# -- antithrombotic timing --


@pytest.mark.parametrize(
    ("after_removal", "expected"),
    [
        (timedelta(hours=4) - MIN, {"antithrombotic_after"}),
        (timedelta(hours=4) + MIN, set()),
    ],
)
def test_r03_low_dose_enoxaparin_after_catheter_removal(
    content: Content, after_removal: timedelta, expected: set[str]
) -> None:
    dose = med_admin(ENOXAPARIN_40, display="enoxaparin 40 mg", at=REMOVED + after_removal)
    assert r03(content, [*catheter(), dose]) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (REMOVED - MIN, {"antithrombotic_in_situ"}),  # catheter still in place
        (REMOVED + MIN, {"antithrombotic_after"}),  # out, but within 24 h of removal
        (REMOVED + timedelta(hours=24) - MIN, {"antithrombotic_after"}),
        (REMOVED + timedelta(hours=24) + MIN, set()),
    ],
)
def test_r03_apixaban_5_mg_with_the_catheter_in_place(
    content: Content, at: datetime, expected: set[str]
) -> None:
    dose = med_admin(APIXABAN_5, display="apixaban 5 mg", at=at)
    assert r03(content, [*catheter(), dose]) == expected


def on_warfarin() -> Resources:
    return [*catheter(), med_admin(WARFARIN, display="warfarin 5 mg", at=h(2))]


@pytest.mark.parametrize(
    ("value", "at", "expected"),
    [
        (1.5, REMOVED - timedelta(hours=1), {"inr_at_removal"}),
        (1.4, REMOVED - timedelta(hours=1), set()),
        (1.5, REMOVED - MIN, {"inr_at_removal"}),
        (1.5, REMOVED - timedelta(hours=24) + MIN, {"inr_at_removal"}),
        (1.4, REMOVED - timedelta(hours=24) + MIN, set()),
        (1.4, REMOVED - timedelta(hours=24) - MIN, {"inr_missing"}),
        (1.2, REMOVED + MIN, {"inr_missing"}),  # measured after the removal: too late
    ],
)
def test_r03_inr_at_catheter_removal_on_warfarin(
    content: Content, value: float, at: datetime, expected: set[str]
) -> None:
    assert r03(content, [*on_warfarin(), inr(value, at)]) == expected


def test_r03_no_inr_at_removal_on_warfarin_is_missing(content: Content) -> None:
    assert r03(content, on_warfarin()) == {"inr_missing"}


def test_r03_latest_inr_before_removal_decides(content: Content) -> None:
    resources = [
        *on_warfarin(),
        inr(1.8, REMOVED - timedelta(hours=10)),
        inr(1.4, REMOVED - timedelta(hours=2)),
    ]
    assert r03(content, resources) == set()


# -- retention persisting after a catheter block --


@pytest.mark.parametrize(
    ("after_block", "expected"),
    [
        (timedelta(hours=24) - MIN, {"isolated_retention"}),
        (timedelta(hours=24), {"isolated_retention"}),
        (timedelta(hours=24) + MIN, {"cauda_equina"}),
    ],
)
def test_r06_retention_after_catheter_block_end(
    content: Content, after_block: timedelta, expected: set[str]
) -> None:
    retention = condition(RETENTION, onset=BLOCK_CATH + after_block)
    assert patterns(content, [*catheter(), retention]) == expected


# -- steroid glucose in diabetes --


def diabetic_esi(insulin: bool = False) -> Resources:
    code = DIABETES_INSULIN if insulin else DIABETES
    return [*esi(), condition(code, onset=d(-400))]


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (300, "mg/dL", {"steroid_glucose_high"}),
        (299, "mg/dL", {"steroid_glucose"}),
        (16.7, "mmol/L", {"steroid_glucose_high"}),
        (16.6, "mmol/L", {"steroid_glucose"}),
    ],
)
def test_r08_glucose_threshold(
    content: Content, value: float, unit: str, expected: set[str]
) -> None:
    resources = [*diabetic_esi(), glucose(value, h(12), unit)]
    assert patterns(content, resources, now=d(1)) == expected


@pytest.mark.parametrize(
    ("insulin", "now", "expected"),
    [
        (False, d(3) - MIN, {"steroid_glucose"}),
        (False, d(3), {"steroid_glucose"}),
        (False, d(3) + MIN, set()),
        (True, d(3) + MIN, {"steroid_glucose"}),
        (True, d(7), {"steroid_glucose"}),
        (True, d(7) + MIN, set()),
    ],
)
def test_r08_window_after_the_esi(
    content: Content, insulin: bool, now: datetime, expected: set[str]
) -> None:
    assert patterns(content, diabetic_esi(insulin), now=now) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (T0 - MIN, {"steroid_glucose"}),  # before the injection: not its effect
        (T0, {"steroid_glucose_high"}),
        (d(3) + MIN, {"steroid_glucose_high"}),  # insulin-treated: counts up to 7 days
        (d(7) - MIN, {"steroid_glucose_high"}),
    ],
)
def test_r08_high_glucose_timing_with_insulin_treated_diabetes(
    content: Content, at: datetime, expected: set[str]
) -> None:
    resources = [*diabetic_esi(insulin=True), glucose(320, at)]
    assert patterns(content, resources, now=d(7)) == expected


def test_r08_no_card_without_diabetes(content: Content) -> None:
    assert patterns(content, [*esi(), glucose(400, h(12))], now=d(1)) == set()


# -- repeat epidural steroid injections --


def esi_at(at: datetime, code: str = "64483", rid: str | None = None) -> dict[str, Any]:
    return procedure(code, CPT, id=rid, performed=at)


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (timedelta(days=13, hours=23), {"repeat_esi_interval"}),
        (timedelta(days=14) - MIN, {"repeat_esi_interval"}),
        (timedelta(days=14) + MIN, set()),
    ],
)
def test_r09_minimum_interval(content: Content, gap: timedelta, expected: set[str]) -> None:
    resources = [esi_at(T0 - gap, rid="esi-1"), esi_at(T0, rid="esi-2")]
    assert patterns(content, resources, now=d(1)) == expected


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (timedelta(days=365) - MIN, {"repeat_esi_count"}),
        (timedelta(days=365), {"repeat_esi_count"}),
        (timedelta(days=365) + MIN, set()),  # only 3 sessions in the year
    ],
)
def test_r09_four_sessions_per_region_per_year(
    content: Content, first: timedelta, expected: set[str]
) -> None:
    resources = [
        esi_at(T0 - first, rid="esi-1"),
        esi_at(d(-200), rid="esi-2"),
        esi_at(d(-100), rid="esi-3"),
        esi_at(T0, rid="esi-4"),
    ]
    assert patterns(content, resources, now=d(1)) == expected


def test_r09_sessions_in_another_region_do_not_count(content: Content) -> None:
    resources = [
        esi_at(d(-300), ESI_CERVICAL, rid="esi-1"),
        esi_at(d(-200), rid="esi-2"),
        esi_at(d(-100), rid="esi-3"),
        esi_at(T0, rid="esi-4"),
    ]
    assert patterns(content, resources, now=d(1)) == set()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (d(30) - MIN, {"repeat_esi_interval"}),
        (d(30), {"repeat_esi_interval"}),
        (d(30) + MIN, set()),
    ],
)
def test_r09_shown_while_the_latest_injection_is_recent(
    content: Content, now: datetime, expected: set[str]
) -> None:
    resources = [esi_at(d(-7), rid="esi-1"), esi_at(T0, rid="esi-2")]
    assert patterns(content, resources, now=now) == expected


# -- post-dural-puncture headache --


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (T0, {"post_puncture_headache"}),
        (d(5) - MIN, {"post_puncture_headache"}),
        (d(5), {"post_puncture_headache"}),
        (d(5) + MIN, {"atypical_headache"}),
        (d(14), {"atypical_headache"}),
        (d(14) + MIN, set()),
    ],
)
def test_r10_headache_windows(content: Content, at: datetime, expected: set[str]) -> None:
    assert patterns(content, [*esi(), condition(HEADACHE, onset=at)]) == expected


# -- unattributed red flags --


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(days=7) - MIN, {"unattributed_red_flags"}),
        (timedelta(days=7), {"unattributed_red_flags"}),
        (timedelta(days=7) + MIN, set()),
    ],
)
def test_r04_red_flags_recorded_in_the_last_7_days(
    content: Content, age: timedelta, expected: set[str]
) -> None:
    # With R-04's currency raised above 7 days, the 7-day recency rule alone decides.
    longer = {**content.settings.current_finding, "R-04": timedelta(days=30)}
    settings = replace(content.settings, current_finding=longer)
    now = d(100)  # the ESI at T0 explains nothing this late
    flag = condition(FAECAL_INCONTINENCE, onset=now - age)
    chart = replace(chart_of([*esi(), flag], content, now), asra=content.asra)
    assert {m.pattern for m in rules.evaluate(chart, settings)} == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(hours=72), {"unattributed_red_flags"}),
        (timedelta(hours=72) + MIN, set()),
    ],
)
def test_r04_stops_when_its_red_flag_is_no_longer_current(
    content: Content, age: timedelta, expected: set[str]
) -> None:
    # §3.5: R-04 has no window end, so only the age of the record (72 h by default) applies.
    now = d(100)
    flag = condition(FAECAL_INCONTINENCE, onset=now - age)
    assert patterns(content, [*esi(), flag], now=now) == expected


# -- site soreness (off by default) --


def test_r11_disabled_by_default(content: Content) -> None:
    assert content.settings.site_soreness_enabled is False
    assert patterns(content, [*esi(), condition(LOW_BACK_PAIN, onset=h(24))]) == set()


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (d(3) - MIN, {"site_soreness"}),
        (d(3), {"site_soreness"}),
        (d(3) + MIN, set()),
    ],
)
def test_r11_window_when_enabled(content: Content, at: datetime, expected: set[str]) -> None:
    enabled = replace(content, settings=replace(content.settings, site_soreness_enabled=True))
    assert patterns(enabled, [*esi(), condition(LOW_BACK_PAIN, onset=at)]) == expected


# -- HbA1c thresholds (diabetes at 6.5 %, poor control above 7 %) --

HBA1C = "4548-4"


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        (6.5, d(1), {"steroid_glucose"}),
        (6.4, d(1), set()),
        (7.0, d(3) + MIN, set()),  # controlled: 3-day window
        (7.1, d(3) + MIN, {"steroid_glucose"}),  # poorly controlled: 7-day window
    ],
)
def test_r08_hba1c_thresholds(
    content: Content, value: float, now: datetime, expected: set[str]
) -> None:
    a1c = observation(HBA1C, LOINC, effective=d(-30), value=value, unit="%")
    assert patterns(content, [*esi(), a1c], now=now) == expected


# -- INR with the catheter in place (hold warfarin above 3) --


@pytest.mark.parametrize(("value", "expected"), [(3.0, set()), (3.1, {"inr_in_situ"})])
def test_r03_inr_with_catheter_in_situ(content: Content, value: float, expected: set[str]) -> None:
    resources = [
        procedure("01967", CPT, id="cath", period=True),
        epidural_infusion(h(0), id="inf"),
        med_admin(WARFARIN, display="warfarin 5 mg", at=h(2)),
        inr(value, h(10)),
    ]
    assert patterns(content, resources, now=h(12)) == expected | {"catheter_monitoring"}
