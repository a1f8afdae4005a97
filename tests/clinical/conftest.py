"""Fixtures and FHIR R4 builders for the clinical-core unit tests.

Every test uses a fixed clock: ``T0`` is the index puncture, ``h(x)`` / ``d(x)`` are ``x`` hours /
days after it, and ``now`` is always passed explicitly. The builders produce the smallest FHIR
resources that carry what the clinical core reads (codes, times, statuses, bodySite laterality,
text-only variants), so each test states exactly the facts it depends on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service import content as content_module
from service.clinical import episodes, findings, medications, rules
from service.clinical.model import Episode, Match, MedicationEvent
from service.content import Content
from service.engine import evaluate
from service.fhir.record import PatientRecord
from service.render import RenderContext

SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

PATIENT_ID = "pat-1"
USER = "Practitioner/1"
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # the index puncture in most tests
MIN = timedelta(minutes=1)

SIDE_CODES = {"left": "7771000", "right": "24028007", "bilateral": "51440002"}
SIDE_DISPLAYS = {"left": "Left", "right": "Right", "bilateral": "Right and left"}

# Frequently used codes.
WEAKNESS = "713514005"  # Muscle weakness of limb
NUMBNESS = "309537005"  # Numbness of lower limb
HEAVY_LEGS = "161873000"
LEG_PAIN = "10601006"  # Pain in lower limb
LOW_BACK_PAIN = "279039007"
RETENTION = "267064002"
FAECAL_INCONTINENCE = "72042002"
FEVER = "386661006"
CAUDA_EQUINA = "192970008"
PARAPLEGIA = "60389000"
TEMPERATURE = "8310-5"
WBC = "6690-2"
CRP = "1988-5"
ESR = "4537-7"
PAIN_SCORE = "72514-3"
EPIDURAL_ROUTE = "404820008"
ROPIVACAINE_TEXT = "ropivacaine 0.1% + fentanyl 2 mcg/mL epidural infusion"
LIDOCAINE = "6387"
TRIAMCINOLONE = "10759"
DEXAMETHASONE = "3264"
ENOXAPARIN_40 = "854235"
WARFARIN = "11289"

_ids = itertools.count(1)


def h(hours: float, base: datetime = T0) -> datetime:
    """``hours`` after ``base`` (the puncture by default)."""
    return base + timedelta(hours=hours)


def d(days: float, base: datetime = T0) -> datetime:
    """``days`` after ``base`` (the puncture by default)."""
    return base + timedelta(days=days)


def iso(value: datetime | str) -> str:
    """A FHIR dateTime; strings are passed through unchanged (partial dates, no offset...)."""
    if isinstance(value, str):
        return value
    return value.isoformat().replace("+00:00", "Z")


def _id(prefix: str, given: str | None) -> str:
    return given if given is not None else f"{prefix}-{next(_ids)}"


def codeable(
    code: str | None = None,
    system: str = SNOMED,
    *,
    text: str | None = None,
    display: str | None = None,
) -> dict[str, Any]:
    """A CodeableConcept: coded, text-only (``code=None``) or both."""
    concept: dict[str, Any] = {}
    if code is not None:
        coding: dict[str, Any] = {"system": system, "code": code}
        if display is not None:
            coding["display"] = display
        concept["coding"] = [coding]
    if text is not None:
        concept["text"] = text
    return concept


def body_site(side: str | None = None, *, text: str | None = None) -> list[dict[str, Any]]:
    """``bodySite`` with a SNOMED laterality qualifier and/or free text."""
    if side is None:
        return [{"text": text}] if text else []
    return [codeable(SIDE_CODES[side], SNOMED, display=SIDE_DISPLAYS[side], text=text)]


def procedure(
    code: str | None = "64483",
    system: str = CPT,
    *,
    id: str | None = None,
    text: str | None = None,
    display: str | None = None,
    performed: datetime | str | None = T0,
    end: datetime | str | None = None,
    period: bool = False,
    status: str = "completed",
    used: str | None = None,
    extra_codings: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """A Procedure; ``end``/``period`` make it a ``performedPeriod``."""
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": _id("proc", id),
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": codeable(code, system, text=text, display=display),
    }
    for extra_code, extra_system in extra_codings:
        resource["code"].setdefault("coding", []).append(
            {"system": extra_system, "code": extra_code}
        )
    if period or end is not None:
        span: dict[str, str] = {}
        if performed is not None:
            span["start"] = iso(performed)
        if end is not None:
            span["end"] = iso(end)
        resource["performedPeriod"] = span
    elif performed is not None:
        resource["performedDateTime"] = iso(performed)
    if used is not None:
        resource["usedCode"] = [{"text": used}]
    return resource


def condition(
    code: str | None = WEAKNESS,
    system: str = SNOMED,
    *,
    id: str | None = None,
    onset: datetime | str | None = None,
    recorded: datetime | str | None = None,
    text: str | None = None,
    display: str | None = None,
    side: str | None = None,
    site_text: str | None = None,
    verification: str | None = "confirmed",
    clinical: str | None = "active",
    note: str | None = None,
    abated: datetime | str | None = None,
) -> dict[str, Any]:
    """A Condition (symptom/finding/diagnosis); ``clinical=None`` leaves out clinicalStatus."""
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": _id("cond", id),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": codeable(code, system, text=text, display=display),
    }
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if abated is not None:
        resource["abatementDateTime"] = iso(abated)
    if verification is not None:
        resource["verificationStatus"] = {
            "coding": [{"system": VERIFICATION, "code": verification}]
        }
    sites = body_site(side, text=site_text)
    if sites:
        resource["bodySite"] = sites
    if onset is not None:
        resource["onsetDateTime"] = iso(onset)
    if recorded is not None:
        resource["recordedDate"] = iso(recorded)
    if note is not None:
        resource["note"] = [{"text": note}]
    return resource


def observation(
    code: str | None = TEMPERATURE,
    system: str = LOINC,
    *,
    id: str | None = None,
    effective: datetime | str | None = None,
    issued: datetime | str | None = None,
    value: float | None = None,
    unit: str | None = None,
    integer: int | None = None,
    value_string: str | None = None,
    value_code: tuple[str, str] | None = None,
    value_text: str | None = None,
    value_boolean: bool | None = None,
    interpretation: str | None = None,
    status: str = "final",
    text: str | None = None,
    side: str | None = None,
    site_text: str | None = None,
    note: str | None = None,
    reference_high: float | None = None,
) -> dict[str, Any]:
    """An Observation (vital sign, lab, pain score or symptom)."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("obs", id),
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": codeable(code, system, text=text),
    }
    if effective is not None:
        resource["effectiveDateTime"] = iso(effective)
    if issued is not None:
        resource["issued"] = iso(issued)
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity.update({"unit": unit, "system": UCUM, "code": unit})
        resource["valueQuantity"] = quantity
    if integer is not None:
        resource["valueInteger"] = integer
    if value_string is not None:
        resource["valueString"] = value_string
    if value_code is not None or value_text is not None:
        vcode, vsystem = value_code if value_code else (None, SNOMED)
        resource["valueCodeableConcept"] = codeable(vcode, vsystem, text=value_text)
    if value_boolean is not None:
        resource["valueBoolean"] = value_boolean
    if interpretation is not None:
        resource["interpretation"] = [
            {"coding": [{"system": INTERPRETATION, "code": interpretation}]}
        ]
    sites = body_site(side, text=site_text)
    if sites:
        resource["bodySite"] = sites[0]
    if note is not None:
        resource["note"] = [{"text": note}]
    if reference_high is not None:
        resource["referenceRange"] = [{"high": {"value": reference_high}}]
    return resource


def temperature(celsius: float, at: datetime | str, **kw: Any) -> dict[str, Any]:
    """A body temperature in °C."""
    return observation(TEMPERATURE, effective=at, value=celsius, unit="Cel", **kw)


def pain_score(score: int, at: datetime | str, **kw: Any) -> dict[str, Any]:
    """A 0-10 pain score (LOINC 72514-3)."""
    return observation(PAIN_SCORE, effective=at, integer=score, **kw)


def _medication(
    code: str | None, system: str, text: str | None, display: str | None
) -> dict[str, Any]:
    return codeable(code, system, text=text, display=display)


def med_admin(
    code: str | None = None,
    system: str = RXNORM,
    *,
    id: str | None = None,
    text: str | None = None,
    display: str | None = None,
    at: datetime | str | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    status: str = "completed",
    epidural: bool = False,
    route_text: str | None = None,
) -> dict[str, Any]:
    """A MedicationAdministration: ``at`` is effectiveDateTime, ``start``/``end`` a period."""
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": _id("admin", id),
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": _medication(code, system, text, display),
    }
    if at is not None:
        resource["effectiveDateTime"] = iso(at)
    if start is not None or end is not None:
        span: dict[str, str] = {}
        if start is not None:
            span["start"] = iso(start)
        if end is not None:
            span["end"] = iso(end)
        resource["effectivePeriod"] = span
    if epidural or route_text:
        route = (
            codeable(EPIDURAL_ROUTE, SNOMED, display="Epidural route", text=route_text)
            if epidural
            else codeable(None, text=route_text)
        )
        resource["dosage"] = {"route": route}
    return resource


def med_request(
    code: str | None = None,
    system: str = RXNORM,
    *,
    id: str | None = None,
    text: str | None = None,
    display: str | None = None,
    authored: datetime | str | None = None,
    status: str = "active",
    epidural: bool = False,
) -> dict[str, Any]:
    """A MedicationRequest (an order: its time is the order time)."""
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _id("req", id),
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": _medication(code, system, text, display),
    }
    if authored is not None:
        resource["authoredOn"] = iso(authored)
    if epidural:
        resource["dosageInstruction"] = [{"route": codeable(EPIDURAL_ROUTE, SNOMED)}]
    return resource


def epidural_infusion(start: datetime, end: datetime | None = None, **kw: Any) -> dict[str, Any]:
    """An epidural ropivacaine/fentanyl infusion (epidural route); open when ``end`` is None."""
    kw.setdefault("status", "completed" if end is not None else "in-progress")
    return med_admin(text=ROPIVACAINE_TEXT, start=start, end=end, epidural=True, **kw)


def entered_in_error(resource: dict[str, Any], new_id: str) -> dict[str, Any]:
    """A copy of ``resource`` with another id and the status that says it was recorded in error."""
    import copy

    clone = copy.deepcopy(resource)
    clone["id"] = new_id
    if clone["resourceType"] == "Condition":
        clone["verificationStatus"] = {
            "coding": [{"system": VERIFICATION, "code": "entered-in-error"}]
        }
    else:
        clone["status"] = "entered-in-error"
    return clone


# -- running the clinical core --


def _split(resources: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    return by_type


def meds_of(resources: Iterable[dict[str, Any]], content: Content) -> tuple[MedicationEvent, ...]:
    """Medication events of a list of resources."""
    by_type = _split(resources)
    return medications.collect(
        by_type.get("MedicationAdministration", []),
        by_type.get("MedicationRequest", []),
        content.lexicon,
    )


def episodes_of(
    resources: Iterable[dict[str, Any]], content: Content, now: datetime
) -> tuple[Episode, ...]:
    """Index episodes of a list of resources at ``now``."""
    resources = list(resources)
    return episodes.find(
        _split(resources).get("Procedure", []),
        meds_of(resources, content),
        content.lexicon,
        content.settings,
        now,
    )


_TIME_KEYS = (
    "onsetDateTime",
    "recordedDate",
    "abatementDateTime",
    "effectiveDateTime",
    "effectiveInstant",
    "issued",
    "performedDateTime",
    "authoredOn",
    "start",
    "end",
)


def just_after(resources: Iterable[dict[str, Any]], earliest: datetime) -> datetime:
    """One hour after the latest time recorded in ``resources``, and not before ``earliest``.

    The chart is opened right after its last record: since cards stop once their evidence is
    no longer current (clinical-spec §3.5), window tests evaluate at the time the record was
    written rather than months later.
    """
    from service.clinical.timing import parse

    latest = earliest - timedelta(hours=1)

    def visit(value: Any) -> None:
        nonlocal latest
        if isinstance(value, dict):
            for key, item in value.items():
                if key in _TIME_KEYS and isinstance(item, str):
                    when = parse(item)
                    if when is not None and when.latest > latest:
                        latest = when.latest
                else:
                    visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for resource in resources:
        visit(resource)
    return latest + timedelta(hours=1)


def chart_of(resources: Iterable[dict[str, Any]], content: Content, now: datetime) -> rules.Chart:
    """The rules' view of a list of resources at ``now``."""
    resources = list(resources)
    by_type = _split(resources)
    meds = meds_of(resources, content)
    index = episodes.find(
        by_type.get("Procedure", []), meds, content.lexicon, content.settings, now
    )
    observed = findings.collect(
        by_type.get("Condition", []),
        by_type.get("Observation", []),
        content.lexicon,
        content.settings,
        now,
    )
    return rules.Chart(index, observed, meds, now)


def matches_of(resources: Iterable[dict[str, Any]], content: Content, now: datetime) -> list[Match]:
    """Every rule match of a list of resources at ``now``."""
    return rules.evaluate(chart_of(resources, content, now), content.settings)


def patterns_of(
    resources: Iterable[dict[str, Any]], content: Content, now: datetime
) -> set[tuple[str, str, str]]:
    """``(rule, pattern, indicator)`` of every match."""
    return {(m.rule, m.pattern, m.indicator) for m in matches_of(resources, content, now)}


def counter_ids() -> Callable[[], str]:
    """A deterministic ``new_id`` for RenderContext."""
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def cards_of(
    resources: Iterable[dict[str, Any]], content: Content, now: datetime
) -> list[dict[str, Any]]:
    """The cards the engine returns for a list of resources at ``now``."""
    ctx = RenderContext(PATIENT_ID, USER, None, now, new_id=counter_ids())
    return evaluate(PatientRecord.from_resources(PATIENT_ID, list(resources)), content, ctx)


def brief(cards: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(indicator, summary)`` of each card, in order."""
    return [(card["indicator"], card["summary"]) for card in cards]


# -- fixtures --


@pytest.fixture(scope="session")
def content() -> Content:
    """The shipped clinical content, loaded and validated once."""
    return content_module.load()


@pytest.fixture(scope="session")
def summary(content: Content) -> Callable[[str], str]:
    """The card summary of a pattern, read from the content (never hard-coded in tests)."""
    return lambda pattern: content.wording.cards[pattern].summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the assertion-context scores when the corpus test ran (test_assertion_corpus.py)."""
    from tests.clinical.assertion_scoring import LAST_REPORT

    if LAST_REPORT:
        terminalreporter.section("assertion context: precision and recall per class")
        for line in LAST_REPORT:
            terminalreporter.write_line(line)
