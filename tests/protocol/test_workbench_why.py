"""The "why each rule did or did not fire" panel covers every rule, R-01 to R-11.

For each rule pattern there is a chart where it fires and a near miss where it does not
(tests/protocol/why_charts.py: example patients where one fits, else charts built with the
clinical tests' builders). Each case checks that the rule's conditions appear, whether each is
met, and the value found behind it: the resource and its value, time, side or interval, or the
note that says what was found. Then, over every chart here and every example patient, the
conditions as listed must agree with what the engine decided (the entry fired exactly when its
conditions hold), so the panel cannot drift from the rules it explains.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.clinical.antithrombotics import R03_PATTERNS
from service.workbench_conditions import verdict
from tests.protocol.conftest import EXAMPLE_DIRS
from tests.protocol.why_charts import CHARTS, CONTENT, entries, example

RULES = {f"R-{n:02d}" for n in range(1, 12)}

Expect = tuple[str, bool, str]
"""A condition (a fragment of its text), whether it is met, and a value found behind it (a
fragment of one found line's resource and text, or of the condition's note; "" for none)."""

CASES: list[tuple[str, str, bool, tuple[Expect, ...]]] = [
    # R-01, haematoma (motor): S1's weakness of both legs; the same weakness on the left only.
    ("s1", "hematoma_motor", True, (
        ("New leg weakness within 7 d", True, "Condition/s1-cond-leg-weakness-bilateral"),
        ("Both legs affected", True, "(bilateral), 2026-03-10 18:00"),
        ("Still current", True, "documented 1.7 h ago"),
    )),
    ("s1-left-only", "hematoma_motor", False, (
        ("New leg weakness within 7 d", True, "Weakness of left leg (left)"),
        ("Both legs affected", False, "only one side recorded"),
    )),
    # R-01, haematoma (sensory): numbness of both legs from text; one numb leg the next day.
    ("s7", "hematoma_sensory", True, (
        ("New leg numbness within 7 d", True, "Condition/s7-"),
        ("Both legs affected", True, "both sides affected"),
    )),
    ("s2b", "hematoma_sensory", False, (
        ("New leg numbness within 7 d", True, "Numbness of right leg persists (right)"),
        ("Both legs affected", False, "only one side recorded"),
    )),
    # R-01, cauda equina: S1's retention with a leg deficit; S1 without the retention.
    ("s1", "cauda_equina", True, (
        ("Urinary retention together with a leg deficit", True, "s1-cond-urinary-retention"),
        ("Saddle numbness or incontinence", False, ""),
        ("Urinary retention more than 24 h after", False, "Urinary retention, 2026-03-10 19:00"),
    )),
    ("s1-no-retention", "cauda_equina", False, (
        ("Urinary retention together with a leg", False, "retention not found, leg deficit found"),
        ("Urinary retention together with a leg", False, "Weakness of both legs (bilateral)"),
    )),
    # R-01, abscess with a deficit: S1 with a fever of 38.9; S3b's fever and back pain (no deficit).
    ("s1-febrile", "abscess_deficit", True, (
        ("A new neurological or sphincter deficit", True, "Weakness of both legs"),
        ("Fever or raised infection markers within 60 d", True, "Body temperature 38.9 Cel"),
    )),
    ("s3b", "abscess_deficit", False, (
        ("A new neurological or sphincter deficit", False, ""),
        ("Fever or raised infection markers within 60 d", True, "CRP 85 mg/L"),
    )),
    # R-01, cord infarction: weakness of both legs 2 h after a cervical ESI; one leg after an ESI.
    ("s14", "cord_infarct", True, (
        ("The procedure is an epidural steroid injection", True, "esi"),
        ("New leg weakness within 2 d of the injection", True, "s14-cond-weakness-both-legs"),
        ("Both legs affected", True, "both sides affected"),
    )),
    ("s5b", "cord_infarct", False, (
        ("New leg weakness within 2 d of the injection", True, "New weakness of left leg (left)"),
        ("Both legs affected", False, "only one side recorded"),
    )),
    # R-01, recorded diagnosis: cauda equina syndrome 2 h after; the same 10 days before (baseline).
    ("recorded", "recorded_diagnosis", True, (
        ("A spinal emergency diagnosis recorded within 60 d", True, "Cauda equina syndrome"),
    )),
    ("recorded-before", "recorded_diagnosis", False, (
        ("A spinal emergency diagnosis recorded within 60 d", False, "2026-02-28 10:00"),
    )),
    # R-02, abscess: fever, CRP and back pain; a fever on day 2 with no back pain.
    ("s3b", "abscess", True, (
        ("Fever or raised infection markers from 24 h to 60 d", True, "Body temperature 38.4 Cel"),
        ("New back pain or insertion-site signs", True, "Condition/s3b-cond-low-back-pain"),
    )),
    ("i12a", "abscess", False, (
        ("Fever or raised infection markers from 24 h to 60 d", True, "Temperature 40.6 Cel"),
        ("New back pain or insertion-site signs", False, ""),
    )),
    # R-02, fever without local signs: the day-2 fever; S1 with a fever 12 h after the puncture.
    ("i12a", "fever_after_epidural", True, (
        ("Fever or raised infection markers from 24 h to 60 d", True, "Temperature 40.6 Cel"),
        ("No new back pain or insertion-site signs", True, ""),
    )),
    ("s1-early-fever", "fever_after_epidural", False, (
        ("Fever or raised infection markers from 24 h to 60 d", False, "2026-03-09 20:00"),
    )),
    # enoxaparin 1.5 h after removal; an INR of 1.8 at removal; apixaban with the catheter
    # in place; a single heparin dose 5 days before an ESI (no conflict).
    ("s1", "antithrombotic_timing", True, (
        ("enoxaparin 1.5 h after the removal (ASRA: wait at least 4 h)", True,
         "given 1.5 h after the catheter removal; ASRA advises at least 4 h"),
        ("Enoxaparin 40 mg prefilled syringe ordered", False, "judged instead of the order"),
    )),
    ("s10", "antithrombotic_timing", True, (
        ("Warfarin: no INR in the 24 h before", True, "INR 1.8, 2026-10-22 05:00"),
        ("Warfarin: no INR in the 24 h before", True, "INR 1.8 before catheter removal"),
    )),
    ("s4", "antithrombotic_timing", True, (
        ("apixaban with the catheter in place", True, "MedicationAdministration/s4-medadmin"),
    )),
    ("i12i", "antithrombotic_timing", False, (
        ("heparin 5.1 d before the puncture (ASRA: at least 6 h)", False, "outside every ASRA"),
        ("Heparin for more than 4 d", False, "heparin course of more than 4 d: no"),
    )),
    # retention and saddle numbness 45 days after an ESI; the same records a week older.
    ("s6c", "unattributed_red_flags", True, (
        ("No critical pattern of an epidural fired", True, ""),
        ("Red flags recorded in the last 7 d", True, "Condition/s6c-cond-urinary-retention"),
        ("Outside every epidural's attribution window", True, "numb between the legs"),
    )),
    ("s6c-older", "unattributed_red_flags", False, (
        ("Red flags recorded in the last 7 d", False, "2026-11-12 07:00"),
    )),
    # numbness the day after a TFESI; the same numbness inside the block.
    ("s2b", "persisting_symptoms", True, (
        ("A block end is expected", True, ""),
        ("New leg numbness, heaviness, weakness or pain within 14 d", True,
         "Observation/s2b-obs-numbness-right-leg-day1"),
    )),
    ("s2a", "persisting_symptoms", False, (
        ("New leg numbness, heaviness, weakness or pain within 14 d", False,
         "Numb right leg after injection (right), 2026-04-14 10:30"),
    )),
    # R-05, pain scores: 8/10 after 5/10 before a TFESI (the score grades the leg pain).
    ("s9a", "persisting_symptoms", True, (
        ("A leg-pain score of 7 or more", True, "Pain score 8/10"),
        ("A leg-pain score of 7 or more", True, "Observation/s9a-obs-pain-pre: Pain score 5/10"),
    )),
    # R-05, infusion variant: weakness while the infusion runs; after the catheter is out.
    ("dense", "dense_block_infusion", True, (
        ("An epidural catheter whose infusion is still running", True, ""),
        ("New leg weakness within 7 d", True, "Condition/w"),
    )),
    ("dense-out", "dense_block_infusion", False, (
        ("An epidural catheter whose infusion is still", False, "block ends 2026-03-11 02:00"),
        ("New leg weakness within 7 d", True, "(left), 2026-03-11 01:00"),
    )),
    # R-06: retention 20 h after an ESI; the same with a numb leg (then R-01's pattern).
    ("retention", "isolated_retention", True, (
        ("New urinary retention from the puncture to 24 h after", True, "Condition/ret"),
        ("No new leg deficit after the expected block end", True, ""),
    )),
    ("retention-numb", "isolated_retention", False, (
        ("New urinary retention from the puncture to 24 h after", True, "Condition/ret"),
        ("No new leg deficit after the expected block end", False, "Condition/numb"),
    )),
    # R-07: S1's catheter out 22 h ago; the same chart nine months later.
    ("s1", "catheter_monitoring", True, (
        ("The procedure is an epidural catheter", True, ""),
        ("The catheter was removed less than 24 h ago", True, "removed 22 h before now"),
    )),
    ("i12d", "catheter_monitoring", False, (
        ("The catheter was removed less than 24 h ago", False, "removed 275.9 d before now"),
    )),
    # glucose 310 after an ESI in insulin-treated diabetes; 190.
    ("s11", "steroid_glucose_high", True, (
        ("Diabetes: a diagnosis, or an HbA1c", True, "Type 2 diabetes mellitus on insulin"),
        ("The injection was in the last 3 d", True, "window 7 d (insulin-treated diabetes"),
        ("A glucose of 300 mg/dL or more", True, "Capillary glucose 310 mg/dL"),
    )),
    ("s11b", "steroid_glucose_high", False, (
        ("A glucose of 300 mg/dL or more", False, "Capillary glucose 190 mg/dL"),
    )),
    ("s11b", "steroid_glucose", True, (
        ("No glucose of 300 mg/dL or more", True, "Capillary glucose 190 mg/dL"),
    )),
    ("s11", "steroid_glucose", False, (
        ("No glucose of 300 mg/dL or more", False, "Capillary glucose 310 mg/dL"),
    )),
    # ESIs 9 days apart; 15 days apart; four sessions in a year; three.
    ("esi-9-days", "repeat_esi_interval", True, (
        ("At least two epidural steroid injections", True, "Procedure/esi-1"),
        ("It followed the previous one by less than 14 d", True, "9 d apart"),
    )),
    ("esi-15-days", "repeat_esi_interval", False, (
        ("It followed the previous one by less than 14 d", False, "15 d apart"),
    )),
    ("esi-4-a-year", "repeat_esi_count", True, (
        ("At least 4 sessions in the same spinal region", True, "4 in the region"),
    )),
    ("esi-3-a-year", "repeat_esi_count", False, (
        ("At least 4 sessions in the same spinal region", False, "3 in the region"),
    )),
    # an orthostatic headache on day 1; the same with fever and neck stiffness.
    ("s12", "post_puncture_headache", True, (
        ("A new headache within 14 d", True, "Headache on sitting up"),
        ("It started within 5 d of the puncture", True, "Condition/s12-cond-orthostatic-headache"),
        ("No fever, neck stiffness", True, ""),
    )),
    ("s12b", "post_puncture_headache", False, (
        ("No fever, neck stiffness", False, "neck stiffness, 2026-12-03 08:00"),
        ("No fever, neck stiffness", False, "Body temperature 38.5 Cel"),
    )),
    ("s12b", "atypical_headache", True, (
        ("Fever, neck stiffness, seizure", True, "Observation/s12b-obs-temp"),
    )),
    ("s12", "atypical_headache", False, (
        ("It started later than 5 d after the puncture", False, "Headache on sitting up"),
        ("Fever, neck stiffness, seizure", False, ""),
    )),
    # ... and a headache that starts on day 7: too late for a typical post-puncture headache.
    ("headache-day-7", "atypical_headache", True, (
        ("It started later than 5 d after the puncture", True, "Condition/ha"),
    )),
    ("headache-day-7", "post_puncture_headache", False, (
        ("A new headache within 14 d", True, "2026-03-17 10:00"),
        ("It started within 5 d of the puncture", False, "Condition/ha"),
    )),
    # R-11 (off by default): back pain on day 1 with the rule enabled; with the default content.
    ("sore", "site_soreness", True, (
        ("Enabled in cards/settings.yaml", True, ""),
        ("New back pain within 3 d", True, "Low back pain, 2026-03-11 10:00"),
    )),
    ("sore-off", "site_soreness", False, (
        ("Enabled in cards/settings.yaml", False, "switched off"),
        ("New back pain within 3 d", True, "Condition/sore"),
    )),
]  # fmt: skip


def _entry(explanation: dict[str, Any], pattern: str) -> dict[str, Any]:
    found = [e for e in entries(explanation) if e["pattern"] == pattern]
    assert len(found) == 1, (pattern, [e["pattern"] for e in entries(explanation)])
    return found[0]


def _condition(entry: dict[str, Any], text: str, value: str) -> dict[str, Any]:
    candidates = [c for c in entry["conditions"] if text in c["text"]]
    assert candidates, (text, [c["text"] for c in entry["conditions"]])
    for candidate in candidates:
        shown = [f"{f['resource']}: {f['text']}" for f in candidate["found"]] + [candidate["note"]]
        if any(value in s for s in shown):
            return candidate
    pytest.fail(f"{text!r}: no value {value!r} in {[c['found'] for c in candidates]}")


@pytest.mark.parametrize(
    ("chart", "pattern", "fires", "expected"),
    CASES,
    ids=[f"{c[1]}-{'fires' if c[2] else 'near-miss'}-{c[0]}" for c in CASES],
)
def test_each_rule_shows_its_conditions_and_the_values_found(
    chart: str, pattern: str, fires: bool, expected: tuple[Expect, ...]
) -> None:
    entry = _entry(CHARTS[chart]().explanation(), pattern)
    assert entry["fired"] is fires
    assert entry["statement"].startswith("When"), entry["statement"]
    for text, met, value in expected:
        assert _condition(entry, text, value)["met"] is met, (text, value)
    if not fires:
        assert not verdict(entry["conditions"])  # the near miss: a condition that failed


def test_every_rule_and_every_card_pattern_has_an_entry() -> None:
    explanation = CHARTS["s1"]().explanation()
    listed = entries(explanation)
    assert {e["rule"] for e in listed} == RULES
    patterns = {e["pattern"] for e in listed} | set(R03_PATTERNS)
    assert set(CONTENT.wording.cards) <= patterns
    # Every pattern has a case where it fires and one where it does not.
    covered = {(c[1], c[2]) for c in CASES}
    named = {e["pattern"] for e in listed}
    assert {(p, fires) for p in named for fires in (True, False)} <= covered


def test_rules_over_the_whole_record_are_listed_once() -> None:
    explanation = example("s1-labour-epidural-lmwh-weakness").explanation()
    per_episode = {e["rule"] for ep in explanation["episodes"] for e in ep["entries"]}
    assert {e["rule"] for e in explanation["record"]} == {"R-04", "R-09"}
    assert per_episode == RULES - {"R-04", "R-09"}


def _all_charts() -> list[tuple[str, Any]]:
    built = [(name, make) for name, make in CHARTS.items()]
    examples = [(p.name, lambda p=p: example(p.name)) for p in EXAMPLE_DIRS]
    return built + examples


@pytest.mark.parametrize(("name", "make"), _all_charts(), ids=[n for n, _ in _all_charts()])
def test_the_conditions_agree_with_the_engine_on_every_chart(name: str, make: Any) -> None:
    explanation = make().explanation()
    for entry in entries(explanation):
        assert entry["fired"] == verdict(entry["conditions"]), (name, entry["pattern"], entry)
        for condition in entry["conditions"]:
            assert condition["text"] and isinstance(condition["met"], bool)
            for found in condition["found"]:
                assert found["resource"] and found["text"]
