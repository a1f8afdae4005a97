"""Loading and validating the clinical content in ``cards/`` (design.md: "content is data").

Every file is checked against its JSON Schema in ``cards/schema/`` and then cross-checked (every
source, suggestion and concept a file names must exist; every pattern the rules can produce must
have wording). Problems are collected, not raised one by one, so an author sees all of them with
file and JSON path in one run, and the service refuses to start until they are fixed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from service.clinical import findings as clinical_findings
from service.clinical.antithrombotics import R03_PATTERNS
from service.clinical.asra import AsraTable
from service.clinical.context import conflicts as context_conflicts
from service.clinical.imaging import ImagingTable
from service.clinical.lexicon import Lexicon
from service.clinical.settings import ClinicalSettings
from service.clinical.terminology import (
    Code,
    CodeIndex,
    expansion_codes,
    merge_imported,
    valueset_codes,
)
from service.clinical.text import TextMatcher, words
from service.errors import ContentError

FILES = (
    "systems",
    "text",
    "context",
    "settings",
    "service",
    "rules",
    "sources",
    "suggestions",
    "asra",
)
CODES_PLACEHOLDER = "${codes}"
# Code lists: one FHIR ValueSet per concept, valuesets/<concept>.json, validated by
# schema/valueset.schema.json; VSAC expansions in valuesets/imports/<concept>.json add codes.
VALUESET_DIR = "valuesets"
IMPORT_DIR = "valuesets/imports"
VALUESET_SCHEMA = "valueset"
VALUESET_URL_BASE = "https://epidural-cds.example.org/fhir/ValueSet/"

# Concepts the clinical core refers to by name: the content must define each of them.
REQUIRED_CONCEPTS = (
    "procedure_catheter",
    "procedure_esi",
    "procedure_single_shot",
    "procedure_neuraxial_other",
    "route_epidural",
    "corticosteroid",
    "local_anaesthetic",
    "antithrombotic",
    "warfarin",
    "laterality_left",
    "laterality_right",
    "laterality_bilateral",
    "body_temperature",
    "wbc",
    "crp",
    "esr",
    "pain_score",
    "inr",
    "platelets",
    "glucose",
    "hba1c",
    "esi_region_cervical_thoracic",
    "esi_region_lumbar_sacral",
    "negative_value",
    *clinical_findings.FINDING_CONCEPTS,
)
# Card patterns the rules can produce, by indicator section of rules.yaml.
PATTERNS = {
    "critical": (
        "abscess_deficit",
        "cord_infarct",
        "hematoma_motor",
        "cauda_equina",
        "hematoma_sensory",
        "abscess",
        "unattributed_red_flags",
        "recorded_diagnosis",
    ),
    "warning": (
        "fever_after_epidural",
        "dense_block_infusion",
        *R03_PATTERNS,
        "atypical_headache",
        "isolated_retention",
        "persisting_symptoms",
        "steroid_glucose_high",
    ),
    "info": (
        "catheter_monitoring",
        "post_puncture_headache",
        "steroid_glucose",
        "repeat_esi_interval",
        "repeat_esi_count",
        "site_soreness",
    ),
}
# A summary's placeholders ({drug_title}, {hours} ...) are checked filled with this many
# characters each: the longest drug name is 12, durations and values are shorter.
PLACEHOLDER_WIDTH = 12
SUMMARY_LIMIT = 140
LABELLED_FINDINGS = (
    *clinical_findings.FINDING_CONCEPTS,
    clinical_findings.INFECTION_MARKER,
    "pain_score",
    "inr",
    "platelets",
    "glucose",
    "hba1c",
)


@dataclass(frozen=True)
class CardText:
    """Wording of one card pattern."""

    id: str
    rule: str
    summary: str
    headline: str
    topic_code: str
    topic_display: str
    detail: tuple[str, ...]
    sources: tuple[str, ...]
    suggestions: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """A cited guideline or paper."""

    key: str
    label: str
    url: str | None


@dataclass(frozen=True)
class ActionTemplate:
    """One draft ServiceRequest a suggestion would create."""

    description: str
    priority: str
    text: str
    coding: tuple[Code, ...]


@dataclass(frozen=True)
class SuggestionTemplate:
    """A suggestion (button) with its actions."""

    key: str
    label: str
    recommended: bool
    actions: tuple[ActionTemplate, ...]


@dataclass(frozen=True)
class PrefetchSpec:
    """A prefetch key with its final template (codes already substituted)."""

    key: str
    query: str
    required: bool
    why: str


@dataclass(frozen=True)
class ServiceDefinition:
    """One CDS service: what discovery advertises and what the hook endpoint runs."""

    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str | None
    prefetch: tuple[PrefetchSpec, ...]


@dataclass(frozen=True)
class Wording:
    """Everything rules.yaml says about how cards read."""

    source_label: str
    topic_system: str
    disclaimer: str
    text_evidence_note: str
    partial_time_note: str
    cards: Mapping[str, CardText]
    critical_priority: tuple[str, ...]
    pattern_order: tuple[str, ...]
    """Every card pattern, most urgent first (critical, then warning, then info, content order)."""
    critical_actions_text: tuple[str, ...]
    finding_labels: Mapping[str, str]
    procedure_labels: Mapping[str, str]
    laterality_labels: Mapping[str, str]
    override_system: str
    override_reasons: tuple[tuple[str, str], ...]
    phrases: Mapping[str, str]


@dataclass(frozen=True)
class Content:
    """The validated clinical content, ready for the hot path."""

    version: str
    directory: Path
    lexicon: Lexicon
    settings: ClinicalSettings
    services: tuple[ServiceDefinition, ...]
    wording: Wording
    sources: Mapping[str, Source]
    suggestions: Mapping[str, SuggestionTemplate]
    asra: AsraTable
    imaging: ImagingTable
    """Which MRI suggestion(s) a critical card offers (clinical-spec §3.1 imaging region)."""

    def service(self, service_id: str) -> ServiceDefinition | None:
        """The service with ``service_id``, if any."""
        return next((s for s in self.services if s.id == service_id), None)


def default_directory() -> Path:
    """The content shipped with the package."""
    from cards import CONTENT_DIR

    return CONTENT_DIR


def _read(directory: Path, name: str, problems: list[tuple[str, str, str]]) -> Any:
    path = directory / f"{name}.yaml"
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError:
        problems.append((path.name, "$", "file is missing"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "$"
        problems.append((path.name, where, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
    return None


def _schema_problems(directory: Path, name: str, doc: Any) -> list[tuple[str, str, str]]:
    schema_path = directory / "schema" / f"{name}.schema.json"
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [(f"schema/{name}.schema.json", "$", f"cannot load schema: {exc}")]
    validator = Draft202012Validator(schema)
    return [
        (f"{name}.yaml", error.json_path, error.message)
        for error in sorted(validator.iter_errors(doc), key=lambda e: e.json_path)
    ]


@dataclass(frozen=True)
class ValueSets:
    """The code-list files as read: curated ValueSets and imported expansions, by concept."""

    curated: Mapping[str, Mapping[str, Any]]
    imports: Mapping[str, Mapping[str, Any]]


def _valueset_validators(directory: Path) -> tuple[Draft202012Validator, Draft202012Validator]:
    """Validators for a curated ValueSet and for an imported expansion ($defs/import)."""
    schema = json.loads(
        (directory / "schema" / f"{VALUESET_SCHEMA}.schema.json").read_text(encoding="utf-8")
    )
    imported = {"$ref": "#/$defs/import", "$defs": schema.get("$defs", {})}
    return Draft202012Validator(schema), Draft202012Validator(imported)


def _json_problems(
    validator: Draft202012Validator, doc: Any, label: str
) -> list[tuple[str, str, str]]:
    return [
        (label, error.json_path, error.message)
        for error in sorted(validator.iter_errors(doc), key=lambda e: e.json_path)
    ]


def _read_json(path: Path, label: str, problems: list[tuple[str, str, str]]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append((label, "$", f"cannot read: {exc.strerror or exc}"))
    except ValueError as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "$"
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        problems.append((label, where, f"not valid JSON: {message}"))
    return None


def _read_valuesets(directory: Path, problems: list[tuple[str, str, str]]) -> ValueSets | None:
    """Read and schema-check every ValueSet and import; ``None`` when any of them is invalid."""
    if (directory / "codes.yaml").exists():
        problems.append(
            ("codes.yaml", "$", f"no longer read: code lists are FHIR ValueSets in {VALUESET_DIR}/")
        )
    folder = directory / VALUESET_DIR
    if not folder.is_dir():
        problems.append((VALUESET_DIR, "$", "directory is missing"))
        return None
    try:
        curated_validator, import_validator = _valueset_validators(directory)
    except (OSError, ValueError) as exc:
        label = f"schema/{VALUESET_SCHEMA}.schema.json"
        problems.append((label, "$", f"cannot load schema: {exc}"))
        return None
    found: list[tuple[str, str, str]] = []
    curated: dict[str, Mapping[str, Any]] = {}
    imports: dict[str, Mapping[str, Any]] = {}
    for target, subdir, validator in (
        (curated, VALUESET_DIR, curated_validator),
        (imports, IMPORT_DIR, import_validator),
    ):
        for path in sorted((directory / subdir).glob("*.json")):
            label = f"{subdir}/{path.name}"
            doc = _read_json(path, label, found)
            if doc is None:
                continue
            schema_problems = _json_problems(validator, doc, label)
            found.extend(schema_problems)
            if not schema_problems:
                target[path.stem] = doc
    problems.extend(found)
    return None if found else ValueSets(curated, imports)


def import_problems(directory: Path, doc: Any, label: str) -> list[tuple[str, str, str]]:
    """Schema problems of a VSAC expansion meant for ``valuesets/imports/`` (empty when fine)."""
    return _json_problems(_valueset_validators(directory)[1], doc, label)


def code_systems(directory: Path | None = None) -> dict[str, str]:
    """Short name -> FHIR system URI, from ``systems.yaml`` (raises :class:`ContentError`)."""
    directory = directory or default_directory()
    problems: list[tuple[str, str, str]] = []
    doc = _read(directory, "systems", problems)
    if doc is not None:
        problems.extend(_schema_problems(directory, "systems", doc))
    if problems:
        raise ContentError(problems)
    return dict(doc["systems"])


def value_sets(directory: Path | None = None) -> ValueSets:
    """The code-list files as read and schema-checked (raises :class:`ContentError`)."""
    problems: list[tuple[str, str, str]] = []
    found = _read_valuesets(directory or default_directory(), problems)
    if found is None:
        raise ContentError(problems)
    return found


def _concept_codes(valuesets: ValueSets) -> dict[str, tuple[Code, ...]]:
    return {
        name: merge_imported(
            valueset_codes(resource),
            expansion_codes(valuesets.imports[name]) if name in valuesets.imports else (),
        )
        for name, resource in valuesets.curated.items()
    }


def _valueset_problems(
    valuesets: ValueSets, systems: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    known = set(systems.values())
    for name, resource in valuesets.curated.items():
        label = f"{VALUESET_DIR}/{name}.json"
        expected_id = name.replace("_", "-")
        if resource["id"] != expected_id:
            problems.append((label, "$.id", f"must be {expected_id!r}, from the file name"))
        if resource["url"] != VALUESET_URL_BASE + resource["id"]:
            problems.append((label, "$.url", f"must be {VALUESET_URL_BASE + resource['id']!r}"))
        for i, include in enumerate((resource.get("compose") or {}).get("include") or ()):
            if include["system"] not in known:
                problems.append(
                    (
                        label,
                        f"$.compose.include[{i}].system",
                        f"unknown system {include['system']!r} (not in systems.yaml)",
                    )
                )
    for name in valuesets.imports:
        if name not in valuesets.curated:
            problems.append(
                (
                    f"{IMPORT_DIR}/{name}.json",
                    "$",
                    f"unknown concept {name!r}: no {VALUESET_DIR}/{name}.json to add codes to",
                )
            )
    return problems


def _code(entry: Mapping[str, Any], systems: Mapping[str, str]) -> Code:
    return Code(
        system=systems[entry["system"]],
        code=str(entry["code"]),
        display=entry["display"],
        status=entry["status"],
        laterality=entry.get("laterality"),
    )


def _cross_check(docs: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    systems = docs["systems"]["systems"]
    concepts = docs["valuesets"].curated
    problems = _valueset_problems(docs["valuesets"], systems)
    for name in REQUIRED_CONCEPTS:
        if name not in concepts:
            problems.append(
                (f"{VALUESET_DIR}/{name}.json", "$", f"concept {name!r} is required by the rules")
            )
    for name in docs["text"]["findings"]:
        if name not in clinical_findings.FINDING_CONCEPTS:
            problems.append(
                ("text.yaml", f"$.findings.{name}", "not a finding concept the rules use")
            )
    context = docs["context"]
    if context["language"] not in context["languages"]:
        problems.append(("context.yaml", "$.language", "not one of the languages defined"))
    for language, spec in context["languages"].items():
        for conflict in context_conflicts(spec, words):
            problems.append(("context.yaml", f"$.languages.{language}", conflict))
    for s_index, service in enumerate(docs["service"]["services"]):
        for key, entry in service["prefetch"].items():
            path = f"$.services[{s_index}].prefetch.{key}"
            has_placeholder = CODES_PLACEHOLDER in entry["query"]
            if has_placeholder != ("code_concepts" in entry):
                problems.append(
                    ("service.yaml", path, f"{CODES_PLACEHOLDER} and code_concepts go together")
                )
            for concept in entry.get("code_concepts", ()):
                if concept not in concepts:
                    problems.append(
                        ("service.yaml", f"{path}.code_concepts", f"unknown concept {concept!r}")
                    )
            for system in entry.get("code_systems", ()):
                if system not in systems:
                    problems.append(
                        ("service.yaml", f"{path}.code_systems", f"unknown system {system!r}")
                    )
    rules = docs["rules"]
    sources = docs["sources"]["sources"]
    suggestions = docs["suggestions"]["suggestions"]
    sections = {
        "critical": rules["critical"]["patterns"],
        "warning": rules["warning"],
        "info": rules["info"],
    }
    for section, cards in sections.items():
        prefix = "$.critical.patterns" if section == "critical" else f"$.{section}"
        ids = [card["id"] for card in cards]
        for wanted in PATTERNS[section]:
            if wanted not in ids:
                problems.append(("rules.yaml", prefix, f"no wording for pattern {wanted!r}"))
        for i, card in enumerate(cards):
            for key in card["sources"]:
                if key not in sources:
                    problems.append(
                        ("rules.yaml", f"{prefix}[{i}].sources", f"unknown source {key!r}")
                    )
            for key in card.get("suggestions", ()):
                if key not in suggestions:
                    problems.append(
                        ("rules.yaml", f"{prefix}[{i}].suggestions", f"unknown suggestion {key!r}")
                    )
    for section, cards in sections.items():
        prefix = "$.critical.patterns" if section == "critical" else f"$.{section}"
        for i, card in enumerate(cards):
            filled = re.sub(r"\{[a-z_]+\}", "X" * PLACEHOLDER_WIDTH, card["summary"])
            if len(filled) >= SUMMARY_LIMIT:
                problems.append(
                    (
                        "rules.yaml",
                        f"{prefix}[{i}].summary",
                        f"{len(filled)} characters with placeholders filled; must stay below "
                        f"{SUMMARY_LIMIT}",
                    )
                )
    asra_drugs = docs["asra"]["drugs"]
    for code, (drug, _) in docs["asra"]["dose_classes"].items():
        if drug not in asra_drugs:
            problems.append(("asra.yaml", f"$.dose_classes.{code}", f"unknown drug {drug!r}"))
    for name in LABELLED_FINDINGS:
        if name not in rules["finding_labels"]:
            problems.append(("rules.yaml", "$.finding_labels", f"no label for {name!r}"))
    imaging = docs["suggestions"]["imaging"]
    for region, by_need in imaging["regions"].items():
        for need, keys in by_need.items():
            for key in keys:
                if key not in suggestions:
                    problems.append(
                        (
                            "suggestions.yaml",
                            f"$.imaging.regions.{region}.{need}",
                            f"unknown suggestion {key!r}",
                        )
                    )
    for pattern in imaging["patterns"]:
        if pattern not in PATTERNS["critical"]:
            problems.append(
                ("suggestions.yaml", "$.imaging.patterns", f"not a critical pattern {pattern!r}")
            )
    for key, suggestion in suggestions.items():
        for a, action in enumerate(suggestion["actions"]):
            for c, coding in enumerate(action["coding"]):
                if coding["system"] not in systems:
                    problems.append(
                        (
                            "suggestions.yaml",
                            f"$.suggestions.{key}.actions[{a}].coding[{c}].system",
                            "unknown system",
                        )
                    )
                if coding["status"] == "UNVERIFIED":
                    problems.append(
                        (
                            "suggestions.yaml",
                            f"$.suggestions.{key}.actions[{a}].coding[{c}]",
                            "an UNVERIFIED code must not be sent in an order",
                        )
                    )
    return problems


def _card_text(card: Mapping[str, Any]) -> CardText:
    return CardText(
        id=card["id"],
        rule=card["rule"],
        summary=card["summary"],
        headline=card["headline"],
        topic_code=card["topic"]["code"],
        topic_display=card["topic"]["display"],
        detail=tuple(card["detail"]),
        sources=tuple(card["sources"]),
        suggestions=tuple(card.get("suggestions", ())),
    )


def _build(directory: Path, docs: Mapping[str, Any]) -> Content:
    systems = docs["systems"]["systems"]
    codes = CodeIndex.build(_concept_codes(docs["valuesets"]))
    text_doc = docs["text"]
    asra = AsraTable.from_content(docs["asra"])
    lexicon = Lexicon(
        codes=codes,
        text=TextMatcher.from_content(text_doc, docs["context"]),
        local_anaesthetic_names=tuple(text_doc["local_anaesthetic_names"]),
        corticosteroid_names=tuple(text_doc["corticosteroid_names"]),
        antithrombotic_names=tuple(text_doc["antithrombotic_names"]),
        insulin_names=tuple(text_doc["insulin_names"]),
        thrombolytic_names=asra.thrombolytic_names,
        regions={name: tuple(words) for name, words in text_doc["regions"].items()},
    )
    services = []
    for service in docs["service"]["services"]:
        prefetch = []
        for key, entry in service["prefetch"].items():
            query = entry["query"]
            if "code_concepts" in entry:
                tokens = codes.token_values(
                    entry["code_concepts"],
                    [systems[s] for s in entry.get("code_systems", systems.keys())],
                )
                query = query.replace(CODES_PLACEHOLDER, ",".join(tokens))
            prefetch.append(PrefetchSpec(key, query, bool(entry["required"]), entry["why"]))
        services.append(
            ServiceDefinition(
                id=service["id"],
                hook=service["hook"],
                title=service["title"],
                description=" ".join(service["description"].split()),
                usage_requirements=(
                    " ".join(service["usageRequirements"].split())
                    if "usageRequirements" in service
                    else None
                ),
                prefetch=tuple(prefetch),
            )
        )
    rules = docs["rules"]
    critical = rules["critical"]["patterns"]
    cards = {
        card["id"]: _card_text(card) for card in (*critical, *rules["warning"], *rules["info"])
    }
    wording = Wording(
        source_label=rules["source_label"],
        topic_system=rules["topic_system"],
        disclaimer=" ".join(rules["disclaimer"].split()),
        text_evidence_note=rules["text_evidence_note"],
        partial_time_note=" ".join(rules["partial_time_note"].split()),
        cards=cards,
        critical_priority=tuple(card["id"] for card in critical),
        pattern_order=tuple(cards),
        critical_actions_text=tuple(rules["critical"]["actions_text"]),
        finding_labels=dict(rules["finding_labels"]),
        procedure_labels=dict(rules["procedure_labels"]),
        laterality_labels=dict(rules["laterality_labels"]),
        override_system=rules["override_reasons"]["system"],
        override_reasons=tuple(
            (r["code"], r["display"]) for r in rules["override_reasons"]["reasons"]
        ),
        phrases={key: " ".join(value.split()) for key, value in rules["phrases"].items()},
    )
    sources = {
        key: Source(key, entry["label"], entry.get("url"))
        for key, entry in docs["sources"]["sources"].items()
    }
    suggestions = {
        key: SuggestionTemplate(
            key=key,
            label=entry["label"],
            recommended=bool(entry.get("recommended", False)),
            actions=tuple(
                ActionTemplate(
                    description=action["description"],
                    priority=action["priority"],
                    text=action["text"],
                    coding=tuple(_code(c, systems) for c in action["coding"]),
                )
                for action in entry["actions"]
            ),
        )
        for key, entry in docs["suggestions"]["suggestions"].items()
    }
    return Content(
        version=str(docs["service"]["content_version"]),
        directory=directory,
        lexicon=lexicon,
        settings=ClinicalSettings.from_content(docs["settings"]),
        services=tuple(services),
        wording=wording,
        sources=sources,
        suggestions=suggestions,
        asra=asra,
        imaging=ImagingTable.from_content(
            docs["suggestions"]["imaging"], docs["settings"]["limb_words"]["upper_limb"]
        ),
    )


def load(directory: Path | None = None) -> Content:
    """Load, validate and build the content; raise :class:`ContentError` listing every problem."""
    directory = directory or default_directory()
    problems: list[tuple[str, str, str]] = []
    docs: dict[str, Any] = {}
    for name in FILES:
        doc = _read(directory, name, problems)
        if doc is None:
            continue
        found = _schema_problems(directory, name, doc)
        problems.extend(found)
        if not found:
            docs[name] = doc
    valuesets = _read_valuesets(directory, problems)
    if valuesets is not None:
        docs["valuesets"] = valuesets
    if problems:
        raise ContentError(problems)
    problems = _cross_check(docs)
    if problems:
        raise ContentError(problems)
    return _build(directory, docs)
