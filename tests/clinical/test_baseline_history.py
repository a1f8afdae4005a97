"""Narrow baseline and history (clinical-spec §3.1, amended 2026-12-01).

An old record must never silence a new red flag: only an active Condition of the last
``baseline_lookback_days`` before the puncture is baseline, measurements never are, and a Condition
that abated before the puncture is history (neither baseline nor finding). Each test fails with
the earlier rule ("anything before the puncture is baseline").
"""

from __future__ import annotations

from datetime import timedelta

from service.clinical import history
from service.clinical.model import ESI, Episode, Finding, ResourceRef
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    CAUDA_EQUINA,
    CPT,
    NUMBNESS,
    RETENTION,
    T0,
    condition,
    d,
    epidural_infusion,
    h,
    observation,
    procedure,
    temperature,
)
from tests.clinical.test_rules import Resources, esi, patterns

YEAR = timedelta(days=365)


def catheter_removed() -> Resources:
    """Labour epidural at T0, infusion to h(12), catheter out at h(14): block ends h(16)."""
    return [procedure("01967", CPT, id="cath", end=h(14)), epidural_infusion(h(0), h(12))]


def test_a_fever_decades_ago_does_not_make_a_new_fever_known(content: Content) -> None:
    # Issue 12: a 38.2 °C reading from 1991 silenced a 40.6 °C fever two days after the epidural.
    old = temperature(38.2, "1991-05-04T10:00:00Z", id="t-1991")
    new = temperature(40.6, d(2), id="t-now")
    assert "fever_after_epidural" in patterns(content, [*catheter_removed(), old, new])


def test_a_fever_just_before_the_puncture_is_not_baseline_either(content: Content) -> None:
    # Measurements are never baseline for one another: each is judged at its own time.
    before = temperature(38.4, h(-3), id="t-before")
    after = temperature(38.9, d(2), id="t-after")
    assert "fever_after_epidural" in patterns(content, [*catheter_removed(), before, after])


def test_a_retention_resolved_years_ago_does_not_downgrade_a_new_one(content: Content) -> None:
    # Issue 12: retention + leg numbness after removal was downgraded by a retention resolved
    # three years earlier.
    old = condition(
        RETENTION,
        id="old",
        onset=T0 - 3 * YEAR,
        abated=T0 - 3 * YEAR + timedelta(days=2),
        clinical="resolved",
    )
    new = [
        condition(RETENTION, id="ret", onset=d(1)),
        condition(NUMBNESS, id="numb", onset=d(1), side="left"),
    ]
    found = patterns(content, [*catheter_removed(), old, *new])
    assert "cauda_equina" in found
    assert "isolated_retention" not in found


def test_a_recent_active_condition_is_still_baseline(content: Content) -> None:
    # Left numbness since 10 days before the injection, recorded again the next day: baseline.
    before = condition(NUMBNESS, onset=d(-10), side="left")
    again = condition(NUMBNESS, onset=d(1), side="left")
    assert patterns(content, [*esi(), before, again]) == set()


def test_a_worse_record_than_the_baseline_is_new(content: Content) -> None:
    before = condition(NUMBNESS, onset=d(-10), side="left")
    both = condition(NUMBNESS, onset=d(1), side="bilateral")
    assert "hematoma_sensory" in patterns(content, [*esi(), before, both])


def test_a_condition_older_than_the_look_back_is_not_baseline(content: Content) -> None:
    before = condition(NUMBNESS, onset=d(-31), recorded=d(-31), side="left")
    again = condition(NUMBNESS, onset=d(1), side="left")
    assert "persisting_symptoms" in patterns(content, [*esi(), before, again])


def test_a_recent_record_of_an_old_condition_keeps_it_baseline(content: Content) -> None:
    # Onset or record time within the look-back: reviewed at the pre-procedure visit.
    before = condition(NUMBNESS, onset=d(-200), recorded=d(-3), side="left")
    again = condition(NUMBNESS, onset=d(1), side="left")
    assert patterns(content, [*esi(), before, again]) == set()


def test_a_condition_abated_before_the_puncture_is_not_baseline(content: Content) -> None:
    before = condition(NUMBNESS, onset=d(-10), abated=d(-2), side="left", clinical="resolved")
    again = condition(NUMBNESS, onset=d(1), side="left")
    assert "persisting_symptoms" in patterns(content, [*esi(), before, again])


def test_a_condition_resolved_without_a_date_is_not_baseline(content: Content) -> None:
    before = condition(NUMBNESS, onset=d(-10), side="left", clinical="resolved")
    again = condition(NUMBNESS, onset=d(1), side="left")
    assert "persisting_symptoms" in patterns(content, [*esi(), before, again])


def test_an_observation_before_the_puncture_is_not_baseline(content: Content) -> None:
    # A neuro-check row of left numbness the evening before does not make today's record known.
    row = observation(NUMBNESS, "http://snomed.info/sct", effective=h(-3), side="left")
    again = condition(NUMBNESS, onset=d(1), side="left")
    assert "persisting_symptoms" in patterns(content, [*esi(), row, again])


def test_resolved_history_recorded_today_is_no_finding(content: Content) -> None:
    # Issue 12: "history of cauda equina syndrome", resolved years ago, entered after the
    # epidural without an onset, fired "Spinal emergency recorded after epidural".
    past = condition(
        CAUDA_EQUINA,
        id="hx",
        text="History of cauda equina syndrome",
        recorded=d(1),
        abated="2015-06-01",
        clinical="resolved",
    )
    assert patterns(content, [*esi(), past]) == set()


def history_episode() -> Episode:
    """An ESI at T0 (block ends h(8))."""
    return Episode(
        source=ResourceRef("Procedure", "p"),
        procedure_class=ESI,
        label="ESI",
        punctured=When.at(T0),
        removed=None,
        catheter_in_situ=False,
        last_local_anaesthetic=None,
        block_ends=h(8),
    )


def test_only_an_abatement_before_the_puncture_makes_history() -> None:
    episode = history_episode()
    assert history.is_history(_finding(resolved=When.at(d(-1))), episode)
    # Abated after the puncture: it happened after the epidural (and is no longer current,
    # which test_currency covers), so it is not dropped as history.
    assert not history.is_history(_finding(resolved=When.at(d(20))), episode)
    assert not history.is_history(_finding(), episode)


def _finding(**kw: object) -> Finding:
    base: dict[str, object] = {
        "concept": "leg_numbness",
        "when": When.at(d(-5)),
        "source": ResourceRef("Condition", "c"),
        "label": "Numbness",
        "documented": When.at(d(-5)),
        "condition": True,
    }
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


def test_is_baseline_needs_a_condition(content: Content) -> None:
    episode = history_episode()
    assert history.is_baseline(_finding(), episode, content.settings)
    assert not history.is_baseline(_finding(condition=False), episode, content.settings)


def test_is_baseline_needs_activity_at_the_puncture(content: Content) -> None:
    episode = history_episode()
    settings = content.settings
    assert not history.is_baseline(_finding(resolved=When.at(d(-1))), episode, settings)
    assert not history.is_baseline(_finding(resolved=When.at(T0)), episode, settings)
    assert history.is_baseline(_finding(resolved=When.at(d(2))), episode, settings)


def test_is_baseline_needs_the_look_back(content: Content) -> None:
    episode = history_episode()
    settings = content.settings
    old = When.at(d(-30) - timedelta(minutes=1))
    assert not history.is_baseline(_finding(when=old, documented=old), episode, settings)
    edge = When.at(d(-30))
    assert history.is_baseline(_finding(when=edge, documented=edge), episode, settings)
