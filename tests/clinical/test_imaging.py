"""Which MRI a critical card offers (clinical-spec §3.1 imaging region).

Before this, the MRI came from each pattern's own list, always lumbar (with thoracic for a
haematoma or an abscess): a cervical injection with arm and leg weakness got a thoracic and
lumbar MRI only, and a card with two patterns offered two MRI orders as if both were needed.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service.clinical.limbs import names_any
from service.content import Content
from service.engine import evaluate
from service.fhir.local_search import bundle_resources
from service.fhir.record import PatientRecord
from service.render import RenderContext
from tests.clinical.conftest import (
    CAUDA_EQUINA,
    CPT,
    FAECAL_INCONTINENCE,
    LOW_BACK_PAIN,
    SNOMED,
    USER,
    WEAKNESS,
    cards_of,
    condition,
    counter_ids,
    d,
    h,
    procedure,
    temperature,
)


def mri_keys(content: Content, card: dict[str, Any]) -> list[str]:
    """The suggestion keys of a card's MRI orders, in order (by label)."""
    by_label = {t.label: key for key, t in content.suggestions.items()}
    mri = content.imaging.mri_keys
    keys = [by_label[s["label"]] for s in card.get("suggestions", []) if s["label"] in by_label]
    return [k for k in keys if k in mri]


def critical(content: Content, resources: list[dict[str, Any]], now: Any) -> dict[str, Any]:
    (card,) = cards_of(resources, content, now)
    assert card["indicator"] == "critical"
    return card


def test_cervical_injection_with_arm_and_leg_weakness_images_cervical_and_thoracic(
    content: Content,
) -> None:
    # Issue 12: the suggested MRI was thoracic and lumbar only.
    resources = [
        procedure("64479", id="cesi", text="C6-7 transforaminal epidural steroid injection"),
        condition(WEAKNESS, onset=h(10), side="bilateral", text="Weakness of arms and legs"),
    ]
    card = critical(content, resources, h(11))
    assert mri_keys(content, card) == ["mri_whole_spine"]


def test_arm_symptoms_after_a_lumbar_injection_image_cervical_and_thoracic(
    content: Content,
) -> None:
    weak = condition(WEAKNESS, onset=h(10), side="bilateral", site_text="Both upper limbs")
    card = critical(content, [procedure("64483", id="lesi"), weak], h(11))
    assert mri_keys(content, card) == ["mri_whole_spine"]


def test_a_thoracic_catheter_images_cervical_and_thoracic(content: Content) -> None:
    resources = [
        procedure("427060008", SNOMED, id="tea", status="in-progress", period=True),
        temperature(38.6, d(3), id="t"),
        condition(LOW_BACK_PAIN, onset=d(3)),
    ]
    card = critical(content, resources, h(73))
    assert mri_keys(content, card) == ["mri_whole_spine_contrast", "mri_whole_spine"]


def test_lumbar_haematoma_pattern_keeps_the_thoracic_and_lumbar_mri(content: Content) -> None:
    weak = condition(WEAKNESS, onset=d(1), side="bilateral")
    card = critical(content, [procedure("01967", CPT, id="labour", end=h(14)), weak], h(25))
    assert mri_keys(content, card) == ["mri_hematoma"]


def test_early_weakness_after_a_lumbar_esi_images_the_cord(content: Content) -> None:
    weak = condition(WEAKNESS, onset=h(10), side="bilateral")
    card = critical(content, [procedure("64483", id="lesi"), weak], h(11))
    assert mri_keys(content, card) == ["mri_cord"]


def test_cauda_equina_alone_after_a_lumbar_injection_is_lumbar_only(content: Content) -> None:
    card = critical(
        content, [procedure("62322", CPT), condition(FAECAL_INCONTINENCE, onset=d(3))], d(3)
    )
    assert mri_keys(content, card) == ["mri_cauda_equina"]


def test_abscess_offers_contrast_with_a_no_contrast_alternative(content: Content) -> None:
    resources = [
        procedure("62322", CPT),
        temperature(38.6, d(3), id="t"),
        condition(LOW_BACK_PAIN, onset=d(3)),
    ]
    card = critical(content, resources, h(73))
    assert mri_keys(content, card) == ["mri_abscess", "mri_hematoma"]


def test_a_recorded_diagnosis_alone_offers_no_mri(content: Content) -> None:
    card = critical(content, [procedure("62322", CPT), condition(CAUDA_EQUINA, onset=d(3))], d(3))
    assert mri_keys(content, card) == []


@pytest.mark.parametrize(
    ("text", "arm"),
    [
        ("weakness of both arms", True),
        ("Right upper limb", True),
        ("pins and needles in the hands", True),
        ("warm to touch", False),
        ("pharmacy note", False),
        ("left leg", False),
    ],
)
def test_upper_limb_words_match_whole_words(content: Content, text: str, arm: bool) -> None:
    assert names_any([text], content.settings.upper_limb_words) is arm


def test_the_cervical_esi_example_offers_the_cervical_and_thoracic_mri(content: Content) -> None:
    # fhir_examples/i12k: its expected card is the same as before; what changed is the MRI.
    example = Path(__file__).resolve().parents[2] / "fhir_examples"
    example = example / "i12k-cervical-esi-arm-and-leg-weakness"
    bundle = json.loads((example / "bundle.json").read_text(encoding="utf-8"))
    scenario = json.loads((example / "scenario.json").read_text(encoding="utf-8"))
    now, patient = datetime.fromisoformat(scenario["now"]), scenario["patientId"]
    record = PatientRecord.from_resources(patient, bundle_resources(bundle))
    ctx = RenderContext(patient, USER, None, now, new_id=counter_ids())
    (card,) = evaluate(record, content, ctx)
    assert card["indicator"] == "critical"
    assert mri_keys(content, card) == ["mri_whole_spine"]
    codes = {
        c["code"]
        for s in card["suggestions"]
        for a in s["actions"]
        for c in a["resource"].get("code", {}).get("coding", [])
    }
    assert "30854-4" in codes  # MR cervical and thoracic and lumbar spine WO contrast
    assert not codes & {"72148", "30679-5"}  # no lumbar-only study
