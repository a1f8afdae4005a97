"""The shared earliest-safe-time rule (service/clinical/neuraxial_timing.py, issue 17).

Why: patient-view (R-03 "too soon after", R-07 "next dose not before") and the order hooks must
give the same interval and the same earliest time for the same drug at the same moment. These
tests pin the rule itself (both ASRA "after" intervals bind; a "no catheter" drug waits for the
removal; a dose just before a planned removal waits; warfarin waits on its INR) and then prove
that the two hooks agree, through the clinical core each hook calls.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from service.clinical import antithrombotics, medications, neuraxial_timing, order_check, rules
from service.clinical.asra import Exposure
from service.clinical.findings import Findings
from service.clinical.model import Episode, Match
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    CPT,
    ENOXAPARIN_40,
    LOINC,
    RXNORM,
    T0,
    chart_of,
    episodes_of,
    h,
    med_admin,
    meds_of,
    observation,
    procedure,
)

APIXABAN_5 = "1364445"
ENOXAPARIN = "67108"
WARFARIN = "11289"
INR = "6301-6"


def catheter(end: datetime | None = None, status: str = "completed") -> dict[str, Any]:
    """A lumbar epidural catheter placed at T0, removed at ``end`` (in place while in-progress)."""
    return procedure("62326", CPT, id="cath", performed=T0, end=end, period=True, status=status)


def draft(code: str, text: str, start: datetime | None = None, **dose: Any) -> dict[str, Any]:
    timing: dict[str, Any] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    if start is not None:
        timing["repeat"]["boundsPeriod"] = {"start": start.isoformat()}
    dosage: dict[str, Any] = {"text": text, "timing": timing}
    if dose:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    return {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}], "text": text},
        "dosageInstruction": [dosage],
    }


def exposure_of(content: Content, resource: dict[str, Any], at: datetime) -> Exposure:
    event = medications.from_draft_order(resource, content.lexicon, When.at(at))
    assert event is not None
    found = content.asra.classify(event)
    assert found is not None
    return found


def episode(resources: list[dict[str, Any]], content: Content, now: datetime) -> Episode:
    (only,) = episodes_of(resources, content, now)
    return only


def r03_of(chart: list[dict[str, Any]], content: Content, now: datetime) -> Match:
    """The R-03 match of patient-view (the rules run with the ASRA table, as the engine does)."""
    base = chart_of(chart, content, now)
    with_table = rules.Chart(base.episodes, base.findings, base.medications, now, content.asra)
    (found,) = [m for m in rules.evaluate(with_table, content.settings) if m.rule == "R-03"]
    return found


def judge(
    content: Content, chart: list[dict[str, Any]], drafts: list[dict[str, Any]], now: datetime
) -> list[order_check.DraftVerdict]:
    index = episodes_of(chart, content, now)
    observed = chart_of(chart, content, now).findings
    procedures = [r for r in chart if r["resourceType"] == "Procedure"]
    return order_check.judge(
        drafts,
        index,
        procedures,
        observed,
        content.lexicon,
        content.asra,
        content.settings,
        now,
    )


def test_low_dose_lmwh_after_removal_waits_4_h_from_the_removal(content: Content) -> None:
    removed = h(72)
    ep = episode([catheter(end=removed)], content, h(74))
    exposure = exposure_of(content, draft(ENOXAPARIN_40, "enoxaparin 40 mg daily"), h(74))
    timing = neuraxial_timing.next_dose(ep, exposure, h(74))
    assert timing.conflicts
    assert timing.earliest == removed + timedelta(hours=4)
    assert timing.anchor == neuraxial_timing.REMOVAL


def test_both_after_intervals_bind_so_an_early_removal_does_not_shorten_the_puncture_one(
    content: Content,
) -> None:
    # Treatment-dose enoxaparin: 24 h after the puncture AND 4 h after the removal.
    ep = episode([catheter(end=h(10))], content, h(16))
    exposure = exposure_of(content, draft(ENOXAPARIN, "enoxaparin 1 mg/kg twice daily"), h(16))
    assert exposure.dose_class == "high" and exposure.dose_class_known
    timing = neuraxial_timing.next_dose(ep, exposure, h(16))
    assert timing.earliest == h(24) and timing.anchor == neuraxial_timing.PUNCTURE


def test_weight_based_text_dose_is_not_a_1_mg_dose(content: Content) -> None:
    event = medications.from_draft_order(
        draft(ENOXAPARIN, "enoxaparin 1 mg/kg every 12 hours"), content.lexicon, When.at(T0)
    )
    assert event is not None and event.dose == (1.0, "mg/kg")
    exposure = content.asra.classify(event)
    assert exposure is not None and exposure.dose_class == "high"


def test_no_catheter_drug_with_the_catheter_in_place_has_no_safe_time(content: Content) -> None:
    ep = episode([catheter(status="in-progress")], content, h(20))
    exposure = exposure_of(content, draft(APIXABAN_5, "apixaban 5 mg"), h(20))
    timing = neuraxial_timing.next_dose(ep, exposure, h(20))
    assert timing.catheter_forbidden and timing.earliest is None and timing.conflicts
    assert timing.interval == timedelta(hours=24)


def test_no_catheter_drug_waits_for_a_planned_removal(content: Content) -> None:
    ep = episode([catheter(status="in-progress")], content, h(20))
    exposure = exposure_of(content, draft(APIXABAN_5, "apixaban 5 mg"), h(20))
    timing = neuraxial_timing.next_dose(ep, exposure, h(20), planned_removal=h(30))
    assert timing.catheter_forbidden and timing.earliest == h(54)
    assert timing.anchor == neuraxial_timing.PLANNED_REMOVAL


def test_catheter_compatible_dose_is_judged_from_the_puncture_not_the_planned_removal(
    content: Content,
) -> None:
    ep = episode([catheter(status="in-progress")], content, h(14))
    exposure = exposure_of(content, draft(ENOXAPARIN_40, "enoxaparin 40 mg daily"), h(14))
    assert not neuraxial_timing.next_dose(ep, exposure, h(14), planned_removal=h(60)).conflicts
    # ...but a dose 4 h before that removal would make the removal unsafe (12 h before it).
    close = neuraxial_timing.next_dose(ep, exposure, h(56), planned_removal=h(60))
    assert close.before_removal and close.earliest == h(64)


def test_warfarin_with_a_high_inr_and_the_catheter_in_waits_for_the_removal(
    content: Content,
) -> None:
    ep = episode([catheter(status="in-progress")], content, h(48))
    exposure = exposure_of(content, draft(WARFARIN, "warfarin 5 mg"), h(48))
    limit = content.settings.inr_removal_max
    high = neuraxial_timing.next_dose(
        ep, exposure, h(48), planned_removal=h(54), inr=1.8, inr_limit=limit
    )
    assert high.conflicts and high.inr == 1.8 and high.earliest == h(54)
    low = neuraxial_timing.next_dose(
        ep, exposure, h(48), planned_removal=h(54), inr=1.2, inr_limit=limit
    )
    assert not low.conflicts


def test_a_draft_without_timing_is_judged_from_now(content: Content) -> None:
    spinal = procedure("231249005", "http://snomed.info/sct", id="spinal", performed=T0)
    (verdict,) = judge(content, [spinal], [draft(ENOXAPARIN_40, "enoxaparin 40 mg daily")], h(3))
    assert not verdict.timing_given and verdict.timing.proposed == h(3)
    assert verdict.timing.earliest == h(12)


def test_patient_view_and_the_order_hooks_agree_on_interval_and_time(content: Content) -> None:
    """Issue 17 item 4: one dose given at R+2 h (patient-view) and the same drug ordered for R+2 h
    (order-sign): the same interval and the same earliest time, from one function."""
    removed = h(72)
    given = med_admin(ENOXAPARIN_40, text="enoxaparin 40 mg", at=removed + timedelta(hours=2))
    chart = [catheter(end=removed), given]
    now = removed + timedelta(hours=2, minutes=30)
    # patient-view: R-03's conflict and R-07's "next dose not before".
    r03 = r03_of(chart, content, now)
    assert r03.pattern == "antithrombotic_after"
    after = dict(next(f for f in r03.facts if f.key == "fact_dose_after").params)
    ep = episode(chart, content, now)
    facts = antithrombotics.monitoring_facts(ep, meds_of(chart, content), content.asra)
    next_dose = dict(next(f for f in facts if f.key == "fact_next_dose").params)
    # order-sign: the same drug drafted for the same moment.
    order = draft(ENOXAPARIN_40, "enoxaparin 40 mg daily", start=removed + timedelta(hours=2))
    (verdict,) = judge(content, [catheter(end=removed)], [order], now)
    hours = antithrombotics.format_delta(verdict.timing.interval.total_seconds() / 3600)
    assert after["interval"] == next_dose["interval"] == hours == "4 h"
    assert verdict.timing.earliest is not None
    assert next_dose["time"] == verdict.timing.earliest.isoformat()


def test_patient_view_flags_a_dose_inside_the_puncture_interval_after_an_early_removal(
    content: Content,
) -> None:
    # Before the shared rule, a dose 6 h after an early removal was judged only against the
    # removal (4 h) and passed, although ASRA asks 24 h after the puncture for treatment doses.
    dose = med_admin(ENOXAPARIN, text="enoxaparin 1 mg/kg", at=h(16))
    chart = [catheter(end=h(10)), dose]
    r03 = r03_of(chart, content, h(17))
    params = dict(next(f for f in r03.facts if f.key == "fact_dose_after").params)
    assert params["event_phrase"] == "event_puncture" and params["interval"] == "24 h"


def test_inr_is_read_from_the_record(content: Content) -> None:
    chart = [
        catheter(status="in-progress"),
        observation(INR, LOINC, id="inr", effective=h(40), value=1.8, unit="{INR}"),
    ]
    (verdict,) = judge(content, chart, [draft(WARFARIN, "warfarin 5 mg")], h(48))
    assert verdict.timing.inr == 1.8 and verdict.timing.earliest is None
    assert isinstance(chart_of(chart, content, h(48)).findings, Findings)


def test_patient_view_checks_a_catheter_compatible_dose_against_the_puncture(
    content: Content,
) -> None:
    # Low-dose LMWH may be given with a catheter, but not within 12 h of the puncture.
    dose = med_admin(ENOXAPARIN_40, text="enoxaparin 40 mg", at=h(4))
    r03 = r03_of([catheter(status="in-progress"), dose], content, h(5))
    params = dict(next(f for f in r03.facts if f.key == "fact_dose_after").params)
    assert params["event_phrase"] == "event_puncture" and params["interval"] == "12 h"
