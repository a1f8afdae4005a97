"""Cards say when optional data could not be obtained, instead of implying nothing was there."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from service.cli import request_from_bundle
from tests.support.apps import dev_app

EXAMPLE = Path(__file__).resolve().parents[1] / "fhir_examples" / "s1-labour-epidural-lmwh-weakness"


def _handle(drop: tuple[str, ...]) -> dict[str, object]:
    app = dev_app()
    state = app.extensions["epidural_cds"]
    service = state.content.services[0]
    scenario = json.loads((EXAMPLE / "scenario.json").read_text())
    bundle = json.loads((EXAMPLE / "bundle.json").read_text())
    request = request_from_bundle(
        bundle, scenario["patientId"], {s.key: s.query for s in service.prefetch}
    )
    for key in drop:
        del request["prefetch"][key]
    outcome = state.handler.handle(
        service.id, json.dumps(request).encode(), now=datetime.fromisoformat(scenario["now"])
    )
    return outcome.response


def test_complete_prefetch_has_no_incomplete_note() -> None:
    card = _handle(())["cards"][0]
    assert "could not be obtained" not in card["detail"]


def test_missing_optional_key_is_named_on_the_card() -> None:
    cards = _handle(("medication-administrations",))["cards"]
    assert cards[0]["indicator"] == "critical"
    assert (
        "could not be obtained for this evaluation (medication-administrations)"
        in cards[0]["detail"]
    )
