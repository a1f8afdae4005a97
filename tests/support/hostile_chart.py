"""An example chart whose text fields are hostile, and the cards the service makes from it.

The S1 labour-epidural chart with every text a clinician could have typed replaced by markup:
images that would fetch a URL, HTML, javascript links, autolinks, link reference definitions,
backtick breakouts, block markup across newlines, invisible characters. One extra Condition
carries an id that breaks the FHIR id grammar (a backtick): it must never be echoed. The coded
data are unchanged, so the card is the same critical card as S1's.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
S1 = ROOT / "fhir_examples" / "s1-labour-epidural-lmwh-weakness"
HOST = "http://hostile.invalid"
BAD_ID = "s1-cond-`evil`"
TEXTS = {
    "s1-cond-leg-weakness-bilateral": (
        f"Weak legs ![x]({HOST}/t.png) <img src=x onerror=\"fetch('{HOST}/i')\"> "
        f"[link](javascript:alert(1)) <{HOST}/auto> www.hostile.invalid"
    ),
    "s1-cond-urinary-retention": (
        f"Retention\n[a]: {HOST}/ref\n# heading\n> quote\n| a | b |\n- item\u202e `code`"
    ),
    "s1-proc-labour-epidural": (
        f"Labour epidural <b>bold</b> <script>fetch('{HOST}/s')</script> **strong** id`x`"
    ),
    "s1-medadmin-enoxaparin": (
        f"Enoxaparin 40 mg <iframe src='{HOST}/f'></iframe> [a][b] ~~x~~ &lt;b&gt;"
    ),
}


def hostile_bundle() -> dict[str, Any]:
    """The S1 bundle with hostile text in every displayed field, plus a bad-id Condition."""
    bundle = copy.deepcopy(json.loads((S1 / "bundle.json").read_text(encoding="utf-8")))
    extra = None
    for entry in bundle["entry"]:
        resource = entry["resource"]
        text = TEXTS.get(resource.get("id", ""))
        if text is None:
            continue
        key = "code" if "code" in resource else "medicationCodeableConcept"
        resource[key]["text"] = text
        if resource["id"] == "s1-cond-leg-weakness-bilateral":
            extra = copy.deepcopy(entry)
    assert extra is not None
    extra["resource"]["id"] = BAD_ID
    extra["fullUrl"] = f"urn:uuid:{BAD_ID}"
    extra["request"] = {"method": "PUT", "url": f"Condition/{BAD_ID}"}
    bundle["entry"].append(extra)
    return bundle


def scenario() -> dict[str, Any]:
    """S1's scenario (patient id, evaluation time, expected cards)."""
    loaded: dict[str, Any] = json.loads((S1 / "scenario.json").read_text(encoding="utf-8"))
    return loaded


def now() -> datetime:
    """S1's evaluation time."""
    return datetime.fromisoformat(scenario()["now"].replace("Z", "+00:00"))


def evaluate_bundle(
    bundle: dict[str, Any],
    patient_id: str,
    at: datetime,
    base_url: str = "http://localhost/",
    zone: str = "UTC",
) -> list[dict[str, Any]]:
    """The cards the service answers for ``bundle`` at ``at`` (through the real handler)."""
    from service import content as content_module
    from service.cdshooks.handler import HookHandler
    from service.cli import request_from_bundle
    from service.config import Settings

    content = content_module.load()
    settings = Settings(profile="development", auth_disabled=True, facility_timezone=zone)
    handler = HookHandler(content, settings)
    service = content.services[0]
    templates = {spec.key: spec.query for spec in service.prefetch}
    request = request_from_bundle(bundle, patient_id, templates)
    outcome = handler.handle(service.id, json.dumps(request).encode(), now=at, base_url=base_url)
    cards: list[dict[str, Any]] = json.loads(json.dumps(outcome.response))["cards"]
    return cards


def example(name: str) -> tuple[dict[str, Any], str, datetime]:
    """An example's bundle, patient id and evaluation time."""
    folder = ROOT / "fhir_examples" / name
    meta = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
    bundle = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    return bundle, meta["patientId"], datetime.fromisoformat(meta["now"].replace("Z", "+00:00"))
