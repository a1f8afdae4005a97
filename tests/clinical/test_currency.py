"""Currency: when a card stops (clinical-spec §3.5, amended 2026-12-01).

Each test fails without currency: before it, a red flag fired for as long as its record existed,
and an R-03 timing warning about a dose before a single-shot injection never ended.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from service.clinical import currency, rules
from service.clinical.model import Finding, ResourceRef
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    CPT,
    ENOXAPARIN_40,
    MIN,
    RETENTION,
    T0,
    WEAKNESS,
    cards_of,
    chart_of,
    condition,
    d,
    epidural_infusion,
    h,
    med_admin,
    med_request,
    procedure,
    temperature,
)
from tests.clinical.test_rules import Resources, esi

REMOVED = h(22)
LIMIT = timedelta(hours=72)


def labour_epidural() -> Resources:
    """As S1: catheter T0..h(14) (infusion to h(12)), removed h(22)."""
    return [procedure("01967", CPT, id="cath", end=REMOVED), epidural_infusion(h(0), h(12))]


def weak_and_retained(**kw: object) -> Resources:
    return [
        condition(WEAKNESS, id="weak", onset=d(1), side="bilateral", **kw),  # type: ignore[arg-type]
        condition(RETENTION, id="ret", onset=h(25), **kw),  # type: ignore[arg-type]
    ]


def all_patterns(content: Content, resources: Resources, now: datetime) -> set[str]:
    chart = replace(chart_of(resources, content, now), asra=content.asra)
    return {m.pattern for m in rules.evaluate(chart, content.settings)}


def test_s1_red_flag_fires_the_day_it_is_recorded(content: Content) -> None:
    found = all_patterns(content, [*labour_epidural(), *weak_and_retained()], h(26))
    assert "hematoma_motor" in found


def test_s1_red_flag_no_longer_fires_nine_months_later(content: Content) -> None:
    # Issue 12: "Possible spinal epidural hematoma ... Urgent spine MRI" nine months later.
    resources = [*labour_epidural(), *weak_and_retained()]
    assert cards_of(resources, content, d(270)) == []


def test_active_condition_stays_current_until_72_h_past_the_window(content: Content) -> None:
    resources = [*labour_epidural(), *weak_and_retained()]
    window_end = REMOVED + timedelta(days=7)  # hematoma window: T_ref + 7 d
    assert "hematoma_motor" in all_patterns(content, resources, window_end + LIMIT)
    assert "hematoma_motor" not in all_patterns(content, resources, window_end + LIMIT + MIN)


def test_resolved_conditions_stop_at_their_abatement(content: Content) -> None:
    # Issue 12: S1 after both Conditions were resolved with an abatement date.
    resolved = weak_and_retained(abated=h(30), clinical="resolved")
    resources = [*labour_epidural(), *resolved]
    assert cards_of(resources, content, h(47)) == []  # past the R-07 reminder too
    # Before the abatement the same records still fire.
    assert "hematoma_motor" in all_patterns(content, resources, h(27))


def test_an_observation_is_current_for_72_h_after_it_was_measured(content: Content) -> None:
    resources = [*esi(), temperature(38.6, d(2), id="t")]
    assert "fever_after_epidural" in all_patterns(content, resources, d(2) + LIMIT)
    assert all_patterns(content, resources, d(2) + LIMIT + MIN) == set()


def test_the_currency_of_each_rule_is_configurable(content: Content) -> None:
    resources = [*esi(), temperature(38.6, d(2), id="t")]
    now = d(2) + timedelta(hours=100)
    longer = {**content.settings.current_finding, "R-02": timedelta(hours=120)}
    settings = replace(content.settings, current_finding=longer)
    chart = replace(chart_of(resources, content, now), asra=content.asra)
    assert "fever_after_epidural" in {m.pattern for m in rules.evaluate(chart, settings)}
    assert all_patterns(content, resources, now) == set()


def test_a_record_without_any_time_still_counts(content: Content) -> None:
    # Safety note 1: missing times count as inside; currency never hides such a record.
    untimed = condition(WEAKNESS, id="w", side="bilateral")
    assert "hematoma_motor" in all_patterns(content, [*esi(), untimed], d(200))


def test_r03_ends_48_h_after_a_single_shot_puncture(content: Content) -> None:
    # Issue 12: a warning about a dose before the puncture was still shown 30 days later.
    dose = med_admin(ENOXAPARIN_40, display="enoxaparin 40 mg", at=h(-6))
    resources = [*esi(), dose]
    assert "antithrombotic_before" in all_patterns(content, resources, h(48))
    assert all_patterns(content, resources, h(48) + MIN) == set()
    assert all_patterns(content, resources, d(30)) == set()


def test_r03_ends_48_h_after_catheter_removal(content: Content) -> None:
    dose = med_admin(ENOXAPARIN_40, display="enoxaparin 40 mg", at=REMOVED + timedelta(hours=1))
    resources = [*labour_epidural(), dose]
    assert "antithrombotic_after" in all_patterns(content, resources, REMOVED + timedelta(hours=48))
    assert "antithrombotic_after" not in all_patterns(
        content, resources, REMOVED + timedelta(days=3)
    )


def test_a_thrombolytic_keeps_its_own_ten_day_window(content: Content) -> None:
    lysis = med_admin(text="alteplase 90 mg IV", at=d(5))
    found = all_patterns(content, [*esi(), lysis], d(6))
    assert "thrombolytic_after_puncture" in found


def test_a_thrombolytic_order_alone_after_a_puncture_warns(content: Content) -> None:
    # Found by the false-alarm benchmark (docs/clinical-validation.md): once a completed
    # epidural was no longer a catheter in place for days, an active thrombolytic order two days
    # after the puncture, with no administration recorded, gave no card at all.
    order = med_request(text="alteplase 90 mg IV", authored=d(2))
    assert "thrombolytic_ordered_after_puncture" in all_patterns(content, [*esi(), order], d(2))
    # Its own 10-day window ends it, as for a recorded dose.
    assert all_patterns(content, [*esi(), order], d(30)) == set()
    # An order before the puncture is not this trigger.
    early = med_request(text="alteplase 90 mg IV", authored=d(-1))
    assert "thrombolytic_ordered_after_puncture" not in all_patterns(
        content, [*esi(), early], d(1)
    )


# -- the predicate itself --


def _finding(**kw: object) -> Finding:
    base: dict[str, object] = {
        "concept": "fever",
        "when": When.at(T0),
        "source": ResourceRef("Observation", "o"),
        "label": "Temperature",
        "documented": When.at(T0),
    }
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "now", "window_end", "expected"),
    [
        ({}, T0 + LIMIT, None, True),
        ({}, T0 + LIMIT + MIN, None, False),
        ({}, T0 + LIMIT + MIN, d(30), False),  # an Observation: the age rule only
        ({"condition": True}, d(30) + LIMIT, d(30), True),
        ({"condition": True}, d(30) + LIMIT + MIN, d(30), False),
        ({"condition": True, "resolved": When.at(h(1))}, h(2), d(30), False),
        ({"condition": True, "resolved": When.at(h(3))}, h(2), d(30), True),
        ({"documented": None, "time_known": False}, d(400), None, True),
    ],
)
def test_is_current(
    kw: dict[str, object], now: datetime, window_end: datetime | None, expected: bool
) -> None:
    assert currency.is_current(_finding(**kw), now, LIMIT, window_end) is expected


def test_documented_is_the_later_of_onset_and_record(content: Content) -> None:
    from service.clinical.findings import collect

    resource = condition(WEAKNESS, onset=h(2), recorded=h(5))
    (finding,) = collect([resource], [], content.lexicon, content.settings, d(1)).findings
    assert finding.when == When.at(h(2))
    assert finding.documented == When.at(h(5))
    assert finding.documented_hours_ago(h(10)) == pytest.approx(5.0)


def test_a_fever_long_gone_does_not_make_lasting_back_pain_an_abscess(content: Content) -> None:
    # R-02's trigger is the infection sign: it must be current, the back pain may be older.
    from tests.clinical.conftest import LOW_BACK_PAIN

    resources = [*esi(), temperature(38.6, d(2), id="t"), condition(LOW_BACK_PAIN, onset=d(1))]
    assert "abscess" in all_patterns(content, resources, d(3))
    assert all_patterns(content, resources, d(40)) == set()


def test_a_new_deficit_with_an_older_fever_is_still_an_abscess_pattern(content: Content) -> None:
    # The deficit is current; the fever five days before it still counts (inside 60 days).
    weak = condition(WEAKNESS, onset=d(20), side="left")
    resources = [*esi(), temperature(38.6, d(15), id="t"), weak]
    assert "abscess_deficit" in all_patterns(content, resources, d(20) + timedelta(hours=1))
