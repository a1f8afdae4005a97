"""The hook path's shortcuts give exactly what the plain computations give.

The evidence fingerprint is the same as the original implementation's, on every example.

Suppression state is keyed on the fingerprint, so a faster fingerprint that gave other digests
would silently drop the state every deployment has stored (cards held back after "plan in
place" would show again after an upgrade). :func:`reference_fingerprint` is the implementation
the outcome store shipped with (resources found by scanning the record by type, versions
looked up by reference string); the service's :func:`service.outcomes.keys.fingerprint` must
give the same digest for every card of every example in ``fhir_examples/``, as sent and with a
``meta`` version on every resource (so the version part is exercised too).

The tracker remembers each suggestion's kind by its label and action types; a suggestion with
the same label but other actions must still get its own kind.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.clinical.answer import CardPlan
from service.clinical.model import Finding
from service.fhir.record import PatientRecord
from service.outcomes import keys
from service.outcomes.rewrite import kind_of
from tests.outcomes.conftest import S1, hook, outcome_app
from tests.protocol.conftest import (
    EXAMPLE_DIRS,
    encode,
    load_bundle,
    make_request,
    scenario_now,
    service_id,
    service_state,
)


def _version(index: Mapping[str, Mapping[str, Any]], reference: str) -> str:
    resource = index.get(reference)
    if resource is None:
        return ""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return ""
    return f"{meta.get('versionId', '')}@{meta.get('lastUpdated', '')}"


def _resource_index(record: PatientRecord, references: set[str]) -> dict[str, Any]:
    wanted: dict[str, set[str]] = {}
    for ref in references:
        rtype, _, rid = ref.partition("/")
        wanted.setdefault(rtype, set()).add(rid)
    found: dict[str, Mapping[str, Any]] = {}
    for rtype, ids in wanted.items():
        for resource in record.of_type(rtype):
            found_id = resource.get("id")
            if isinstance(found_id, str) and found_id in ids:
                found[f"{rtype}/{found_id}"] = resource
    return found


def reference_fingerprint(
    plan: CardPlan, evidence: Sequence[Finding], record: PatientRecord
) -> str:
    """The fingerprint as first shipped (issue 15), kept here as the reference."""
    references = {str(plan.episode.source), *(str(f.source) for f in evidence)}
    versions = _resource_index(record, references)
    parts = [
        plan.primary.rule,
        plan.indicator,
        ",".join(plan.patterns),
        str(plan.episode.source),
        _version(versions, str(plan.episode.source)),
    ]
    for finding in evidence:
        source = str(finding.source)
        parts.append(
            "\x1f".join(
                (
                    finding.concept,
                    source,
                    _version(versions, source),
                    finding.when.earliest.isoformat(),
                    finding.when.latest.isoformat(),
                    finding.laterality or "",
                    finding.value or "",
                )
            )
        )
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()


def _versioned(bundle: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(bundle)
    for n, entry in enumerate(changed.get("entry", ())):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            resource["meta"] = {"versionId": str(n + 1), "lastUpdated": "2026-01-02T03:04:05Z"}
    return changed


def test_fingerprints_match_the_original_implementation(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    tracker = service_state(app).handler.outcomes
    assert tracker is not None
    seen: list[tuple[PatientRecord, list[tuple[CardPlan, dict[str, Any]]]]] = []
    real_apply = tracker.apply

    def spy(service: str, hook_instance: str, record: PatientRecord, pairs: Any, **kw: Any) -> Any:
        # A spy, not a stand-in: it records the arguments and calls the real method.
        seen.append((record, list(pairs)))
        return real_apply(service, hook_instance, record, pairs, **kw)

    tracker.apply = spy  # type: ignore[method-assign]
    for example in EXAMPLE_DIRS:
        for bundle in (load_bundle(example), _versioned(load_bundle(example))):
            body = make_request(app, example, bundle=bundle)
            handler = service_state(app).handler
            handler.handle(service_id(app), encode(body), now=scenario_now(example))
    compared = versioned = 0
    for record, pairs in seen:
        for plan, _card in pairs:
            evidence = plan.evidence()
            digest = keys.fingerprint(plan, evidence, record)
            assert digest == reference_fingerprint(plan, evidence, record)
            compared += 1
            versioned += any("meta" in r for r in record.by_id.values() if r is not None)
    # Most examples give a card; each is fingerprinted as sent and with versions.
    assert compared >= len(EXAMPLE_DIRS)
    assert versioned >= len(EXAMPLE_DIRS) // 2


def test_the_remembered_kind_is_the_kind_of_each_suggestion(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    tracker = service_state(app).handler.outcomes
    assert tracker is not None
    [card] = hook(app, S1)
    suggestions = list(card["suggestions"])
    hold = {"type": "update", "description": "hold", "resource": {"resourceType": "x"}}
    suggestions.append({**suggestions[0], "actions": [*suggestions[0]["actions"], hold]})
    suggestions.append({**suggestions[0], "actions": suggestions[0]["actions"][:1]})
    expected = [kind_of(s, tracker.kinds, tracker.content) for s in suggestions]
    assert len(set(expected)) >= 2
    for _ in range(2):  # computed, then remembered
        assert [tracker._kind(s) for s in suggestions] == expected
