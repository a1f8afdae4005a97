"""Charts for the "why" panel tests: for each rule, one where it fires and a near miss.

Example patients of ``fhir_examples/`` serve where one fits (at their scenario's ``now``); the
rest are built with the clinical tests' FHIR builders (tests/clinical/conftest.py), on their
fixed clock (``T0`` is the puncture).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from service import content as content_module
from service.content import Content
from service.fhir.local_search import bundle_resources
from service.fhir.record import PatientRecord
from service.workbench_analysis import analyse
from service.workbench_explain import explain
from tests.clinical.conftest import (
    CAUDA_EQUINA,
    CPT,
    LOW_BACK_PAIN,
    PATIENT_ID,
    RETENTION,
    T0,
    condition,
    d,
    h,
    procedure,
)
from tests.clinical.test_rules import catheter, esi, numbness, running_catheter, weakness
from tests.protocol.conftest import EXAMPLES, load_bundle, load_scenario, scenario_now

CONTENT = content_module.load(None)
SORENESS_ON = replace(CONTENT, settings=replace(CONTENT.settings, site_soreness_enabled=True))
Resources = list[dict[str, Any]]


@dataclass(frozen=True)
class Chart:
    """A record, its patient, the moment it is looked at and the content it is judged with."""

    resources: tuple[dict[str, Any], ...]
    patient: str
    now: datetime
    content: Content = CONTENT

    def explanation(self) -> dict[str, Any]:
        record = PatientRecord.from_resources(self.patient, self.resources)
        analysis = analyse(record, self.content, self.now)
        return explain(analysis, self.content, record)


def example(name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> Chart:
    """An example patient at its scenario's ``now``, its resources changed by ``edit``."""
    directory = EXAMPLES / name
    resources = [copy.deepcopy(r) for r in bundle_resources(load_bundle(directory))]
    for resource in resources:
        if edit is not None:
            edit(resource)
    patient = load_scenario(directory)["patientId"]
    return Chart(tuple(r for r in resources if r), patient, scenario_now(directory))


def built(resources: Resources, now: datetime, content: Content = CONTENT) -> Chart:
    """A chart made with the clinical tests' builders."""
    return Chart(tuple(resources), PATIENT_ID, now, content)


def _where(resource_id: str, change: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    def edit(resource: dict[str, Any]) -> None:
        if resource.get("id") == resource_id:
            change(resource)

    return edit


def _left_only(resource: dict[str, Any]) -> None:
    resource["code"] = {"text": "Weakness of left leg"}
    resource.pop("bodySite", None)


def _febrile(resource: dict[str, Any]) -> None:
    resource["valueQuantity"]["value"] = 38.9


def _early_fever(resource: dict[str, Any]) -> None:
    resource["valueQuantity"]["value"] = 38.9
    resource["effectiveDateTime"] = "2026-03-09T20:00:00+00:00"  # puncture + 12 h


def _drop(resource: dict[str, Any]) -> None:
    resource.clear()


def _days_earlier(days: int) -> Callable[[dict[str, Any]], None]:
    def edit(resource: dict[str, Any]) -> None:
        for key in ("onsetDateTime", "recordedDate", "effectiveDateTime", "issued"):
            if key in resource and resource["resourceType"] in ("Condition", "Observation"):
                moment = datetime.fromisoformat(resource[key].replace("Z", "+00:00"))
                resource[key] = (moment - timedelta(days=days)).isoformat()

    return edit


S1 = "s1-labour-epidural-lmwh-weakness"
HEADACHE = "25064002"
CHARTS: dict[str, Callable[[], Chart]] = {
    "s1": lambda: example(S1),
    "s1-left-only": lambda: example(S1, _where("s1-cond-leg-weakness-bilateral", _left_only)),
    "s1-febrile": lambda: example(S1, _where("s1-obs-temp", _febrile)),
    "s1-early-fever": lambda: example(S1, _where("s1-obs-temp", _early_fever)),
    "s1-no-retention": lambda: example(S1, _where("s1-cond-urinary-retention", _drop)),
    "s7": lambda: example("s7-text-only-red-flag"),
    "s2a": lambda: example("s2a-tfesi-numbness-within-window"),
    "s2b": lambda: example("s2b-tfesi-numbness-next-day"),
    "s3b": lambda: example("s3b-ilesi-heaviness-fever-crp-back-pain"),
    "s14": lambda: example("s14-cervical-ilesi-bilateral-weakness"),
    "s5b": lambda: example("s5b-new-unilateral-weakness"),
    "i12a": lambda: example("i12a-fever-day-2-old-fever-1991"),
    "i12d": lambda: example("i12d-s1-nine-months-later"),
    "i12i": lambda: example("i12i-single-heparin-dose-5-days-before"),
    "s10": lambda: example("s10-warfarin-inr-at-removal"),
    "s4": lambda: example("s4-thoracic-catheter-fever-back-pain-apixaban"),
    "s6c": lambda: example("s6c-esi-45-days-retention-saddle"),
    "s6c-older": lambda: example("s6c-esi-45-days-retention-saddle", _days_earlier(8)),
    "s11": lambda: example("s11-diabetic-glucose-310"),
    "s11b": lambda: example("s11b-diabetic-glucose-190"),
    "s9a": lambda: example("s9a-tfesi-radicular-flare"),
    "s12": lambda: example("s12-pdph-orthostatic-headache"),
    "s12b": lambda: example("s12b-atypical-headache-fever-neck-stiffness"),
    "recorded": lambda: built([*esi(), condition(CAUDA_EQUINA, id="ces", onset=h(2))], h(3)),
    "recorded-before": lambda: built(
        [*esi(), condition(CAUDA_EQUINA, id="ces", onset=d(-10))], h(3)
    ),
    "dense": lambda: built([*running_catheter(), weakness(h(10), "left", id="w")], h(11)),
    "dense-out": lambda: built([*catheter(), weakness(h(15), "left", id="w")], h(16)),
    "retention": lambda: built([*esi(), condition(RETENTION, id="ret", onset=h(20))], h(21)),
    "retention-numb": lambda: built(
        [*esi(), condition(RETENTION, id="ret", onset=h(20)), numbness(h(21), "left", id="numb")],
        h(22),
    ),
    "esi-9-days": lambda: built(_esis(T0 - timedelta(days=9), T0), d(1)),
    "esi-15-days": lambda: built(_esis(T0 - timedelta(days=15), T0), d(1)),
    "esi-4-a-year": lambda: built(_esis(d(-300), d(-200), d(-100), T0), d(1)),
    "esi-3-a-year": lambda: built(_esis(d(-400), d(-200), d(-100), T0), d(1)),
    "headache-day-7": lambda: built([*esi(), condition(HEADACHE, id="ha", onset=d(7))], d(7.1)),
    "sore": lambda: built(
        [*esi(), condition(LOW_BACK_PAIN, id="sore", onset=h(24))], h(25), SORENESS_ON
    ),
    "sore-off": lambda: built([*esi(), condition(LOW_BACK_PAIN, id="sore", onset=h(24))], h(25)),
}


def _esis(*times: datetime) -> Resources:
    """Lumbar transforaminal injections (CPT 64483) at ``times``."""
    return [procedure("64483", CPT, id=f"esi-{i}", performed=at) for i, at in enumerate(times, 1)]


def entries(explanation: dict[str, Any]) -> list[dict[str, Any]]:
    """Every entry of the panel: the episodes' and the whole record's."""
    found = [e for episode in explanation["episodes"] for e in episode["entries"]]
    return found + list(explanation.get("record", []))
