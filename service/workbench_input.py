"""What the card workbench evaluates: example patients, pasted Bundles, and the hook request.

The workbench (docs/workbench.md) turns a FHIR Bundle into exactly the hook request an EHR would
send: our own prefetch templates answered from the Bundle, as ``epidural-cds evaluate BUNDLE``
does. A pasted Bundle is untrusted input from a person, so before that it is validated with the
``fhir.resources`` models and every problem is reported with its resource and path, never as a
500. (The hot path does not do this: full model validation costs more than a whole hook call.)

Examples live in ``fhir_examples/`` of the source tree, which the wheel does not ship; the
workbench lists them from ``EPIDURAL_CDS_WORKBENCH_EXAMPLES_DIR`` or, by default, from the
checkout this package was imported from, and lists none when neither exists.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.content import ServiceDefinition
from service.fhir.local_search import build_prefetch, bundle_resources
from service.fhir.prefetch import render_template

WORKBENCH_USER = "Practitioner/workbench"
_EXAMPLE_ID = re.compile(r"[a-z0-9][a-z0-9\-]{0,99}")
MAX_PROBLEMS = 200


def default_examples_dir() -> Path | None:
    """``fhir_examples/`` beside the package, when running from a source checkout."""
    candidate = Path(__file__).resolve().parent.parent / "fhir_examples"
    return candidate if candidate.is_dir() else None


@dataclass(frozen=True)
class Problem:
    """One validation problem: which entry and resource, the FHIRPath-like place, the message."""

    entry: int | None
    resource: str
    path: str
    message: str

    def issue(self) -> dict[str, Any]:
        """As an OperationOutcome issue (``expression`` names the place)."""
        return {
            "severity": "error",
            "code": "structure",
            "details": {"text": self.resource},
            "diagnostics": self.message,
            "expression": [self.path],
        }


class Examples:
    """The example patients of one directory, read on demand (they are small)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def listing(self) -> list[dict[str, Any]]:
        """Id, title, scenario, patient and evaluation time of every example, by id."""
        if self.directory is None:
            return []
        out = []
        for folder in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            scenario = self._scenario(folder)
            if scenario is None:
                continue
            out.append(
                {
                    "id": folder.name,
                    "title": str(scenario.get("title", folder.name)),
                    "scenario": str(scenario.get("scenario", "")),
                    "patientId": str(scenario.get("patientId", "")),
                    "now": str(scenario.get("now", "")),
                    "description": str(scenario.get("description", "")),
                }
            )
        return out

    def get(self, example_id: str) -> dict[str, Any] | None:
        """``{"scenario": ..., "bundle": ...}`` of one example, or ``None``."""
        if self.directory is None or not _EXAMPLE_ID.fullmatch(example_id):
            return None
        folder = self.directory / example_id
        scenario = self._scenario(folder)
        if scenario is None:
            return None
        try:
            bundle = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return {"scenario": scenario, "bundle": bundle}

    @staticmethod
    def _scenario(folder: Path) -> dict[str, Any] | None:
        try:
            document = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return document if isinstance(document, dict) else None


def _place(location: tuple[Any, ...], prefix: str) -> str:
    path = prefix
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_bundle(bundle: Any) -> list[Problem]:
    """Every structural problem of a FHIR R4 Bundle and its resources (empty when valid).

    Resources are validated with the ``fhir.resources`` R4B models, whose JSON for the resource
    types we read is that of R4. Each entry is validated on its own so a problem names its entry
    and resource.
    """
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return [Problem(None, "Bundle", "Bundle", "the document is not a FHIR Bundle")]
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        return [Problem(None, "Bundle", "Bundle.entry", "Bundle.entry must be an array")]
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            problems.append(Problem(index, "?", f"{where}.resource", "the entry has no resource"))
            continue
        rtype = resource.get("resourceType")
        name = f"{rtype}/{resource.get('id', '?')}" if isinstance(rtype, str) else "?"
        try:
            model = get_fhir_model_class(str(rtype))
        except (KeyError, ValueError, AttributeError, ImportError):
            problems.append(
                Problem(index, name, f"{where}.resource.resourceType", "unknown resource type")
            )
            continue
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                place = _place(tuple(error.get("loc", ())), f"{where}.resource")
                problems.append(Problem(index, name, place, str(error.get("msg", "invalid"))))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems[:MAX_PROBLEMS]


def patient_of(bundle: Mapping[str, Any], patient_id: str | None) -> str | None:
    """The patient to evaluate: the one given, else the Bundle's only Patient."""
    if patient_id:
        return patient_id
    ids = [
        r.get("id")
        for r in bundle_resources(bundle)
        if r.get("resourceType") == "Patient" and isinstance(r.get("id"), str)
    ]
    return str(ids[0]) if len(ids) == 1 else None


def hook_request(
    bundle: Mapping[str, Any], patient_id: str, service: ServiceDefinition
) -> dict[str, Any]:
    """The patient-view request an EHR would send, its prefetch answered from ``bundle``."""
    context = {"userId": WORKBENCH_USER, "patientId": patient_id}
    queries = {p.key: render_template(p.query, context) for p in service.prefetch}
    return {
        "hook": service.hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": build_prefetch(bundle_resources(bundle), queries),
    }
