"""Episode types pick the wording: labour vs surgical catheter, single-shot, ESI route and level."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service import content as content_module
from service.clinical import model
from service.clinical.model import Episode, ResourceRef
from service.clinical.timing import When
from service.content import for_episode


def episode(klass: str, label: str, region: str | None = None) -> Episode:
    at = When.at(datetime(2026, 3, 1, 8, tzinfo=UTC))
    return Episode(
        source=ResourceRef("Procedure", "p"),
        procedure_class=klass,
        label=label,
        punctured=at,
        removed=None,
        catheter_in_situ=False,
        last_local_anaesthetic=None,
        block_ends=None,
        region=region,
    )


@pytest.mark.parametrize(
    ("klass", "label", "region", "chain"),
    [
        (model.CATHETER, "Labour epidural analgesia", None, ("labour", "catheter", "default")),
        (
            model.CATHETER,
            "Epidural for caesarean delivery",
            None,
            ("labour", "catheter", "default"),
        ),
        (
            model.CATHETER,
            "Thoracic epidural after hemicolectomy",
            None,
            ("surgical_catheter", "catheter", "default"),
        ),
        (
            model.ESI,
            "Left L5-S1 transforaminal epidural steroid injection",
            "lumbar_sacral",
            ("esi_transforaminal", "esi_lumbar_sacral", "esi", "default"),
        ),
        (
            model.ESI,
            "Cervical interlaminar ESI C6-7",
            "cervical_thoracic",
            ("esi_interlaminar", "esi_cervical_thoracic", "esi", "default"),
        ),
        (model.ESI, "Caudal epidural steroid injection", None, ("esi_caudal", "esi", "default")),
        (model.SINGLE_SHOT, "Single-shot lumbar epidural", None, ("single_shot", "default")),
        (model.NEURAXIAL_OTHER, "Spinal anaesthesia", None, ("single_shot", "default")),
    ],
)
def test_type_chain(klass: str, label: str, region: str | None, chain: tuple[str, ...]) -> None:
    types = content_module.load().episode_types
    assert types.chain(episode(klass, label, region)) == chain


def test_labour_words_do_not_match_inside_other_words() -> None:
    types = content_module.load().episode_types
    # "laboratory" contains "labor"; whole words only.
    assert types.chain(episode(model.CATHETER, "Epidural, laboratory tests pending"))[0] == (
        "surgical_catheter"
    )


def test_most_specific_wording_wins() -> None:
    card = content_module.load().wording.cards["persisting_symptoms"]
    esi = ("esi_transforaminal", "esi_lumbar_sacral", "esi", "default")
    assert "physician who did the injection" in for_episode(card.do_now, esi)
    assert "infusion" in for_episode(card.do_now, ("labour", "catheter", "default"))
    assert "infusion" not in for_episode(card.do_now, ("single_shot", "default"))
    assert card.sources_for(esi)[0] == "MSW"
    assert card.sources_for(("labour", "catheter", "default"))[0] == "OAA"
