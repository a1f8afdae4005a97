"""Index procedures (clinical-spec §3.1): class, T_punct, T_remove, in situ, T_lastLA, block end."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.clinical import episodes
from service.clinical.model import Episode, ResourceRef
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    CPT,
    DEXAMETHASONE,
    LIDOCAINE,
    MIN,
    SNOMED,
    T0,
    TRIAMCINOLONE,
    d,
    epidural_infusion,
    episodes_of,
    h,
    med_admin,
    med_request,
    procedure,
)


def only(resources: list[dict[str, Any]], content: Content, now: datetime) -> Episode:
    found = episodes_of(resources, content, now)
    assert len(found) == 1, found
    return found[0]


# -- classification --


@pytest.mark.parametrize(
    ("code", "system", "klass"),
    [
        ("64483", CPT, "esi"),
        ("64479", CPT, "esi"),
        ("0230T", CPT, "esi"),
        ("62322", CPT, "single_shot"),
        ("62323", CPT, "single_shot"),
        ("180885006", SNOMED, "single_shot"),
        ("01967", CPT, "catheter"),
        ("62327", CPT, "catheter"),
        ("18946005", SNOMED, "catheter"),
        ("231263004", SNOMED, "catheter"),
        ("277762005", SNOMED, "neuraxial_other"),
        ("231249005", SNOMED, "neuraxial_other"),
    ],
)
def test_class_by_code(content: Content, code: str, system: str, klass: str) -> None:
    episode = only([procedure(code, system)], content, h(2))
    assert (episode.procedure_class, episode.from_text) == (klass, False)


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("0228T", CPT),  # UNVERIFIED in the content: never matched
        ("27447", CPT),  # knee arthroplasty
        ("182871003", SNOMED),
    ],
)
def test_other_or_unverified_codes_are_not_index_procedures(
    content: Content, code: str, system: str
) -> None:
    assert episodes_of([procedure(code, system)], content, h(2)) == ()


def test_most_specific_code_wins(content: Content) -> None:
    resource = procedure("18946005", SNOMED, extra_codings=[("64483", CPT)])
    assert only([resource], content, h(2)).procedure_class == "esi"


def test_single_shot_with_corticosteroid_administration_is_an_esi(content: Content) -> None:
    resources = [
        procedure("62323", CPT),
        med_admin(TRIAMCINOLONE, display="triamcinolone 80 mg", at=T0, epidural=True),
    ]
    episode = only(resources, content, h(2))
    assert (episode.procedure_class, episode.steroid) == ("esi", "triamcinolone 80 mg")


def test_single_shot_without_steroid_stays_single_shot(content: Content) -> None:
    resources = [procedure("62322", CPT), med_admin(LIDOCAINE, at=T0, epidural=True)]
    episode = only(resources, content, h(2))
    assert (episode.procedure_class, episode.steroid) == ("single_shot", None)


@pytest.mark.parametrize(
    ("offset_h", "klass"),
    [(-6, "esi"), (6, "esi"), (6 + 1 / 60, "single_shot"), (-6 - 1 / 60, "single_shot")],
)
def test_steroid_by_other_route_counts_within_six_hours(
    content: Content, offset_h: float, klass: str
) -> None:
    resources = [
        procedure("62322", CPT),
        med_admin(DEXAMETHASONE, display="dexamethasone", at=h(offset_h)),
    ]
    assert only(resources, content, h(12)).procedure_class == klass


def test_steroid_order_counts_too(content: Content) -> None:
    resources = [
        procedure("62322", CPT),
        med_request(TRIAMCINOLONE, display="triamcinolone", authored=h(-1)),
    ]
    assert only(resources, content, h(2)).procedure_class == "esi"


def test_steroid_named_in_used_code_or_procedure_text(content: Content) -> None:
    used = only([procedure("62323", CPT, used="Triamcinolone 80 mg")], content, h(2))
    named = only(
        [procedure("62323", CPT, text="ILESI L4-5 with dexamethasone 10 mg")], content, h(2)
    )
    assert (used.procedure_class, used.steroid) == ("esi", "triamcinolone")
    assert (named.procedure_class, named.steroid) == ("esi", "dexamethasone")


@pytest.mark.parametrize(
    ("text", "klass"),
    [
        ("L4-5 interlaminar epidural steroid injection, fluoro", "esi"),
        ("Labour epidural", "catheter"),
        ("Caudal injection", "single_shot"),
        ("Lumbar puncture", "neuraxial_other"),
    ],
)
def test_text_only_procedures_are_classified(content: Content, text: str, klass: str) -> None:
    episode = only([procedure(None, text=text)], content, h(2))
    assert (episode.procedure_class, episode.from_text, episode.label) == (klass, True, text)


def test_text_only_procedure_that_is_not_neuraxial(content: Content) -> None:
    assert episodes_of([procedure(None, text="General anaesthesia")], content, h(2)) == ()


def test_neuraxial_other_can_be_switched_off(content: Content) -> None:
    settings = dataclasses.replace(content.settings, include_spinal_and_lumbar_puncture=False)
    found = episodes.find([procedure("277762005", SNOMED)], (), content.lexicon, settings, h(2))
    assert found == ()


# -- status and time --


@pytest.mark.parametrize("status", ["entered-in-error", "not-done", "preparation"])
def test_excluded_statuses_are_not_episodes(content: Content, status: str) -> None:
    assert episodes_of([procedure("64483", status=status)], content, h(2)) == ()


def test_stopped_without_time_is_not_an_episode(content: Content) -> None:
    assert episodes_of([procedure("64483", status="stopped", performed=None)], content, h(2)) == ()


@pytest.mark.parametrize("status", ["completed", "in-progress", "stopped"])
def test_statuses_with_a_time_are_episodes(content: Content, status: str) -> None:
    assert only([procedure("64483", status=status)], content, h(2)).punctured == When.at(T0)


def test_completed_without_time_may_have_been_any_time(content: Content) -> None:
    episode = only([procedure("64483", performed=None)], content, h(2))
    assert episode.time_known is False
    assert episode.punctured.latest == h(2)
    assert episode.punctured.earliest < T0 - timedelta(days=365)


def test_future_procedures_are_ignored(content: Content) -> None:
    assert episodes_of([procedure("64483", performed=h(2) + MIN)], content, h(2)) == ()
    assert only([procedure("64483", performed=h(2))], content, h(2)).punctured == When.at(h(2))


def test_puncture_from_performed_period_start(content: Content) -> None:
    assert only([procedure("64483", period=True)], content, h(2)).punctured == When.at(T0)


def test_partial_procedure_date_is_a_span_and_block_end_opens_early(content: Content) -> None:
    # Safety note 1: with a date-only puncture, findings count as "after the block" as soon as
    # they could be, so the block end is taken from the earliest moment the span allows.
    episode = only([procedure("64483", performed="2026-03-10")], content, d(3))
    earliest = datetime(2026, 3, 9, 10, tzinfo=UTC)
    latest = datetime(2026, 3, 11, 13, 59, 59, tzinfo=UTC)
    assert episode.punctured == When(earliest, latest)
    assert episode.block_ends == earliest + timedelta(hours=8)


def test_label_and_source(content: Content) -> None:
    episode = only(
        [procedure("64483", id="p7", display="Transforaminal epidural, lumbar")], content, h(2)
    )
    assert (episode.source, episode.label) == (
        ResourceRef("Procedure", "p7"),
        "Transforaminal epidural, lumbar",
    )
    assert only([procedure("64483")], content, h(2)).label == "epidural procedure"


# -- block end --


@pytest.mark.parametrize(
    ("code", "system", "hours"),
    [("64483", CPT, 8), ("62322", CPT, 8), ("277762005", SNOMED, 4)],
)
def test_block_end_after_single_punctures(
    content: Content, code: str, system: str, hours: int
) -> None:
    episode = only([procedure(code, system)], content, h(2))
    assert episode.block_ends == h(hours)
    assert (episode.removed, episode.catheter_in_situ, episode.last_local_anaesthetic) == (
        None,
        False,
        None,
    )


def test_esi_block_end_ignores_local_anaesthetic(content: Content) -> None:
    resources = [procedure("64483"), med_admin(LIDOCAINE, at=h(0.5), epidural=True)]
    episode = only(resources, content, h(2))
    assert episode.block_ends == h(8)


def test_catheter_removal_from_period_end(content: Content) -> None:
    episode = only([procedure("01967", CPT, end=h(14))], content, h(20))
    assert episode.removed == When.at(h(14))
    assert episode.catheter_in_situ is False
    assert episode.reference == When.at(h(14))
    assert episode.block_ends == h(18)  # no local anaesthetic recorded: removal + 4 h


def test_last_epidural_local_anaesthetic_sets_the_block_end(content: Content) -> None:
    resources = [procedure("01967", CPT, end=h(14)), epidural_infusion(h(0), h(12))]
    episode = only(resources, content, h(20))
    assert episode.last_local_anaesthetic == When.at(h(12))
    assert episode.block_ends == h(16)


def test_coded_epidural_bolus_counts_as_local_anaesthetic(content: Content) -> None:
    resources = [
        procedure("01967", CPT, end=h(14)),
        epidural_infusion(h(0), h(12)),
        med_admin(LIDOCAINE, at=h(13), epidural=True),
    ]
    episode = only(resources, content, h(20))
    assert (episode.last_local_anaesthetic, episode.block_ends) == (When.at(h(13)), h(17))


@pytest.mark.parametrize(
    "other",
    [
        med_admin(LIDOCAINE, at=h(13)),  # not epidural (e.g. IV lidocaine)
        med_request(LIDOCAINE, authored=h(13), epidural=True),  # an order, not a dose
        med_admin(LIDOCAINE, at=h(15), epidural=True),  # after the removal
        med_admin(LIDOCAINE, at=h(-1) - MIN, epidural=True),  # before this puncture
        med_admin(LIDOCAINE, at=h(13), epidural=True, status="entered-in-error"),
    ],
)
def test_doses_that_do_not_move_the_block_end(content: Content, other: dict[str, Any]) -> None:
    resources = [procedure("01967", CPT, end=h(14)), epidural_infusion(h(0), h(12)), other]
    assert only(resources, content, h(20)).block_ends == h(16)


def test_local_anaesthetic_just_before_the_puncture_counts(content: Content) -> None:
    resources = [procedure("01967", CPT, end=h(14)), med_admin(LIDOCAINE, at=h(-1), epidural=True)]
    episode = only(resources, content, h(20))
    assert (episode.last_local_anaesthetic, episode.block_ends) == (When.at(h(-1)), h(3))


def test_in_progress_catheter_is_in_situ_and_running_infusion_has_no_block_end(
    content: Content,
) -> None:
    resources = [
        procedure("01967", CPT, status="in-progress", period=True),
        epidural_infusion(h(0)),
    ]
    episode = only(resources, content, h(20))
    assert (episode.catheter_in_situ, episode.removed, episode.block_ends) == (True, None, None)


def test_in_progress_catheter_ignores_a_period_end(content: Content) -> None:
    episode = only([procedure("01967", CPT, status="in-progress", end=h(14))], content, h(20))
    assert (episode.catheter_in_situ, episode.removed, episode.block_ends) == (True, None, h(4))


def test_open_infusion_after_removal_no_longer_holds_the_block(content: Content) -> None:
    resources = [procedure("01967", CPT, end=h(14)), epidural_infusion(h(0))]
    episode = only(resources, content, h(20))
    assert (episode.catheter_in_situ, episode.block_ends) == (False, h(18))


@pytest.mark.parametrize(
    ("now", "in_situ"),
    [(h(1), True), (h(24), True), (h(24) + MIN, False), (d(5), False)],
)
def test_completed_without_end_presumes_in_situ_for_24_hours(
    content: Content, now: datetime, in_situ: bool
) -> None:
    # §3.1 amended 2026-12-01: only a performedDateTime -> removal time unknown, presumed in
    # place until T_punct + presumed_catheter_hours (24 h), never for days.
    episode = only([procedure("18946005", SNOMED)], content, now)
    assert (episode.catheter_in_situ, episode.removed, episode.block_ends) == (in_situ, None, h(4))
    assert (episode.removal_unknown, episode.presumed_until) == (True, h(24))
    assert episode.reference.latest == h(24)  # windows from T_ref are never shortened


def test_in_progress_catheter_stays_in_situ_and_is_not_presumed(content: Content) -> None:
    episode = only([procedure("01967", CPT, status="in-progress", period=True)], content, d(5))
    assert (episode.catheter_in_situ, episode.removal_unknown) == (True, False)


def test_stopped_infusion_still_sets_the_last_local_anaesthetic(content: Content) -> None:
    resources = [
        procedure("01967", CPT, end=h(14)),
        epidural_infusion(h(0), h(12), status="stopped"),
    ]
    episode = only(resources, content, h(20))
    assert (episode.last_local_anaesthetic, episode.block_ends) == (When.at(h(12)), h(16))


# -- several procedures --


def test_duplicates_of_one_procedure_count_once(content: Content) -> None:
    resources = [procedure("64483", id="p2"), procedure("64484", id="p1")]
    found = episodes_of(resources, content, h(2))
    assert [e.source.id for e in found] == ["p1"]


def test_several_episodes_most_recent_first(content: Content) -> None:
    resources = [
        procedure("64483", id="old", performed=d(-20)),
        procedure("01967", CPT, id="new", end=h(14)),
        procedure("62322", CPT, id="mid", performed=d(-3)),
    ]
    assert [e.source.id for e in episodes_of(resources, content, h(20))] == ["new", "mid", "old"]
