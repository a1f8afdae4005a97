"""Medication events: classes by code and name, times, epidural route, exclusions, order."""

from __future__ import annotations

from typing import Any

import pytest

from service.clinical import medications
from service.clinical.medications import ANTITHROMBOTIC, CORTICOSTEROID, LOCAL_ANAESTHETIC, WARFARIN
from service.clinical.model import MedicationEvent, ResourceRef
from service.clinical.timing import When
from service.content import Content
from tests.clinical.conftest import (
    ENOXAPARIN_40,
    LIDOCAINE,
    ROPIVACAINE_TEXT,
    SNOMED,
    TRIAMCINOLONE,
    h,
    med_admin,
    med_request,
)


def admin_event(resource: dict[str, Any], content: Content) -> MedicationEvent | None:
    return medications.from_administration(resource, content.lexicon)


def request_event(resource: dict[str, Any], content: Content) -> MedicationEvent | None:
    return medications.from_request(resource, content.lexicon)


def test_coded_administration_is_a_complete_event(content: Content) -> None:
    resource = med_admin(ENOXAPARIN_40, id="a1", display="enoxaparin 40 mg", at=h(15.5))
    assert admin_event(resource, content) == MedicationEvent(
        source=ResourceRef("MedicationAdministration", "a1"),
        name="enoxaparin 40 mg",
        classes=frozenset({ANTITHROMBOTIC}),
        administered=True,
        start=When.at(h(15.5)),
        end=When.at(h(15.5)),
        epidural_route=False,
        in_progress=False,
        codes=("854235",),
        dose=(40.0, "mg"),
        text="enoxaparin 40 mg enoxaparin 40 mg",
    )


@pytest.mark.parametrize(
    ("kwargs", "classes"),
    [
        ({"code": LIDOCAINE}, {LOCAL_ANAESTHETIC}),
        ({"code": TRIAMCINOLONE}, {CORTICOSTEROID}),
        ({"code": "3264"}, {CORTICOSTEROID}),  # dexamethasone
        ({"code": ENOXAPARIN_40}, {ANTITHROMBOTIC}),
        ({"code": "1364445"}, {ANTITHROMBOTIC}),  # apixaban 5 mg
        ({"text": "Kenalog (triamcinolone acetonide) 40 mg/mL"}, {CORTICOSTEROID}),
        ({"text": "tinzaparin 4500 IU"}, {ANTITHROMBOTIC}),
        ({"text": ROPIVACAINE_TEXT}, {LOCAL_ANAESTHETIC}),
        (
            {"text": "bupivacaine 0.25% + methylprednisolone 80 mg"},
            {LOCAL_ANAESTHETIC, CORTICOSTEROID},
        ),
        ({"code": "1815", "display": "bupivacaine"}, {LOCAL_ANAESTHETIC}),
    ],
)
def test_drug_classes_by_code_and_by_name(
    content: Content, kwargs: dict[str, Any], classes: set[str]
) -> None:
    event = admin_event(med_admin(at=h(1), **kwargs), content)
    assert event is not None and event.classes == frozenset(classes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"code": "161", "display": "acetaminophen"},
        {"code": "1815"},  # bupivacaine's RxCUI is UNVERIFIED in the content: never matched
        {"text": "prednisolone 5 mg"},  # not an epidural steroid, not a whole-word match
    ],
)
def test_irrelevant_or_unverified_drugs_are_ignored(
    content: Content, kwargs: dict[str, Any]
) -> None:
    assert admin_event(med_admin(at=h(1), **kwargs), content) is None


@pytest.mark.parametrize("status", ["entered-in-error", "not-done"])
def test_excluded_administrations(content: Content, status: str) -> None:
    assert admin_event(med_admin(LIDOCAINE, at=h(1), status=status), content) is None


def test_open_period_is_in_progress(content: Content) -> None:
    event = admin_event(med_admin(text=ROPIVACAINE_TEXT, start=h(0), epidural=True), content)
    assert event is not None
    assert (event.start, event.end, event.in_progress) == (When.at(h(0)), None, True)


def test_in_progress_status_is_in_progress(content: Content) -> None:
    resource = med_admin(text=ROPIVACAINE_TEXT, start=h(0), end=h(5), status="in-progress")
    event = admin_event(resource, content)
    assert event is not None and event.in_progress is True and event.end == When.at(h(5))


def test_closed_period_has_an_end(content: Content) -> None:
    event = admin_event(med_admin(text=ROPIVACAINE_TEXT, start=h(0), end=h(12)), content)
    assert event is not None
    assert (event.start, event.end, event.in_progress) == (When.at(h(0)), When.at(h(12)), False)


@pytest.mark.parametrize(
    ("kwargs", "epidural"),
    [
        ({"epidural": True}, True),
        ({"route_text": "Epidural"}, True),
        ({"route_text": "Intravenous"}, False),
        ({}, False),
    ],
)
def test_epidural_route(content: Content, kwargs: dict[str, Any], epidural: bool) -> None:
    event = admin_event(med_admin(LIDOCAINE, at=h(0), **kwargs), content)
    assert event is not None and event.epidural_route is epidural


def test_epidural_route_from_dosage_text_and_drug_name(content: Content) -> None:
    resource = med_admin(LIDOCAINE, at=h(0))
    resource["dosage"] = {"text": "5 mL via epidural catheter"}
    event = admin_event(resource, content)
    assert event is not None and event.epidural_route is True
    named = admin_event(med_admin(text="Epidural bupivacaine 0.1%", at=h(0)), content)
    assert named is not None and named.epidural_route is True


def test_contained_medication_is_resolved(content: Content) -> None:
    resource = med_admin(at=h(0), id="a9")
    del resource["medicationCodeableConcept"]
    resource["medicationReference"] = {"reference": "#m1"}
    resource["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": {
                "coding": [
                    {
                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": TRIAMCINOLONE,
                        "display": "triamcinolone",
                    }
                ]
            },
        },
    ]
    event = admin_event(resource, content)
    assert event is not None and (event.name, event.classes) == (
        "triamcinolone",
        frozenset({CORTICOSTEROID}),
    )


def test_medication_reference_display_is_read(content: Content) -> None:
    resource = med_admin(at=h(0))
    del resource["medicationCodeableConcept"]
    resource["medicationReference"] = {"reference": "Medication/x", "display": "Warfarin 5 mg"}
    event = admin_event(resource, content)
    assert event is not None and (event.name, event.classes) == (
        "Warfarin 5 mg",
        frozenset({ANTITHROMBOTIC, WARFARIN}),
    )


# -- requests --


def test_request_is_an_order_with_uncertain_timing(content: Content) -> None:
    resource = med_request(ENOXAPARIN_40, id="r1", display="enoxaparin", authored=h(2))
    assert request_event(resource, content) == MedicationEvent(
        source=ResourceRef("MedicationRequest", "r1"),
        name="enoxaparin",
        classes=frozenset({ANTITHROMBOTIC}),
        administered=False,
        start=When.at(h(2)),
        end=None,
        epidural_route=False,
        in_progress=True,
        codes=("854235",),
        text="enoxaparin enoxaparin",
    )


@pytest.mark.parametrize(
    ("status", "in_progress"), [("active", True), ("on-hold", True), ("completed", False)]
)
def test_request_statuses_that_count(content: Content, status: str, in_progress: bool) -> None:
    event = request_event(med_request(ENOXAPARIN_40, authored=h(2), status=status), content)
    assert event is not None and event.in_progress is in_progress


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "draft"])
def test_excluded_requests(content: Content, status: str) -> None:
    assert request_event(med_request(ENOXAPARIN_40, authored=h(2), status=status), content) is None


def test_request_epidural_route_from_dosage_instruction(content: Content) -> None:
    event = request_event(med_request(TRIAMCINOLONE, authored=h(0), epidural=True), content)
    assert event is not None and event.epidural_route is True


# -- collect --


def test_collect_orders_administrations_first_then_by_time(content: Content) -> None:
    admins = [
        med_admin(LIDOCAINE, id="a2", at=h(5)),
        med_admin(LIDOCAINE, id="a1", at=h(1)),
        med_admin(LIDOCAINE, id="a0"),  # no time: first
        med_admin("161", id="x", at=h(0)),  # irrelevant
        med_admin(LIDOCAINE, id="e", at=h(0), status="entered-in-error"),
    ]
    requests = [med_request(ENOXAPARIN_40, id="r1", authored=h(-5))]
    events = medications.collect(admins, requests, content.lexicon)
    assert [e.source.id for e in events] == ["a0", "a1", "a2", "r1"]


def test_route_code_system_matters(content: Content) -> None:
    resource = med_admin(LIDOCAINE, at=h(0))
    resource["dosage"] = {"route": {"coding": [{"system": "urn:other", "code": "404820008"}]}}
    event = admin_event(resource, content)
    assert event is not None and event.epidural_route is False
    resource["dosage"] = {"route": {"coding": [{"system": SNOMED, "code": "404820008"}]}}
    event = admin_event(resource, content)
    assert event is not None and event.epidural_route is True
