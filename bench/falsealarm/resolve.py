"""Resolve a transaction Bundle's references the way a FHIR server does when it stores it.

Why: generated Bundles point at each other with ``urn:uuid:`` full URLs (and Synthea also uses
conditional references such as ``Organization?identifier=sys|val``). A server processing the
transaction (FHIR R4 http.html#trules) gives every entry a ``Type/id`` and rewrites each reference
to it; the service's prefetch queries (``Procedure?patient=X``) only match such references. The
local search in ``service.fhir.local_search`` does not do this, so without this step a generated
chart answers every patient query with nothing.

What it does, exactly:

* the id of an entry is ``request.url``'s id for ``PUT Type/id``, otherwise the resource's own
  ``id``, otherwise the UUID of its ``urn:uuid:`` full URL (a server would mint a fresh one; a
  deterministic id keeps results reproducible);
* every ``reference`` string anywhere in a resource (nested in lists and backbone elements too)
  that equals an entry's ``fullUrl`` becomes that entry's ``Type/id``;
* a conditional reference ``Type?identifier=system|value`` (or ``=value``) becomes the ``Type/id``
  of the one entry of that type carrying that identifier; with no or several matches it is left
  as written and counted, as a server would reject it;
* a ``urn:uuid:``/``urn:oid:`` reference that names no entry is left as written and counted.

The input is not modified; the output is a list of resources, in entry order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote


@dataclass
class Resolution:
    """The resources of a Bundle with resolved references, and what could not be resolved."""

    resources: list[dict[str, Any]]
    resolved: int = 0
    unresolved: list[str] = field(default_factory=list)


def _entry_id(entry: Mapping[str, Any], resource: Mapping[str, Any], index: int) -> str:
    request = entry.get("request") or {}
    url = str(request.get("url") or "")
    if str(request.get("method") or "").upper() == "PUT" and "/" in url and "?" not in url:
        return url.rsplit("/", 1)[-1]
    own = resource.get("id")
    if isinstance(own, str) and own:
        return own
    full = str(entry.get("fullUrl") or "")
    if full.startswith("urn:uuid:"):
        return full.removeprefix("urn:uuid:")
    return f"entry-{index}"


def _identifier_index(resources: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """(type, system, value) -> ids; system "" matches ``identifier=value`` without a system."""
    index: dict[tuple[str, str, str], list[str]] = {}
    for resource in resources:
        for ident in resource.get("identifier") or []:
            if not isinstance(ident, Mapping) or not isinstance(ident.get("value"), str):
                continue
            rtype, rid = resource["resourceType"], resource["id"]
            for system in {str(ident.get("system") or ""), ""}:
                index.setdefault((rtype, system, ident["value"]), []).append(rid)
    return index


def _conditional(
    reference: str, identifiers: Mapping[tuple[str, str, str], list[str]]
) -> str | None:
    rtype, _, query = reference.partition("?")
    name, _, value = query.partition("=")
    if name != "identifier" or not value or "&" in value:
        return None
    value = unquote(value)
    system, bar, code = value.rpartition("|")
    ids = identifiers.get((rtype, system if bar else "", code), [])
    unique = sorted(set(ids))
    return f"{rtype}/{unique[0]}" if len(unique) == 1 else None


def resolve_bundle(bundle: Mapping[str, Any]) -> Resolution:
    """Resources of ``bundle`` with ids assigned and references rewritten to ``Type/id``."""
    entries = [e for e in bundle.get("entry") or [] if isinstance(e.get("resource"), Mapping)]
    resources: list[dict[str, Any]] = []
    targets: dict[str, str] = {}
    for index, entry in enumerate(entries):
        resource = copy.deepcopy(dict(entry["resource"]))
        resource["id"] = _entry_id(entry, resource, index)
        resources.append(resource)
        full = entry.get("fullUrl")
        local = f"{resource['resourceType']}/{resource['id']}"
        if isinstance(full, str) and full:
            targets[full] = local
        targets[local] = local
    identifiers = _identifier_index(resources)
    out = Resolution(resources)

    def rewrite(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                target = targets.get(ref)
                if target is None and "?" in ref:
                    target = _conditional(ref, identifiers)
                if target is not None:
                    if target != ref:
                        out.resolved += 1
                    node["reference"] = target
                elif ref.startswith(("urn:uuid:", "urn:oid:")) or "?" in ref:
                    out.unresolved.append(ref)
            for value in node.values():
                if isinstance(value, dict | list):
                    rewrite(value)
        elif isinstance(node, list):
            for item in node:
                rewrite(item)

    for resource in resources:
        rewrite(resource)
    return out
