"""Evaluate CDS Hooks prefetch queries against in-memory FHIR resources.

Why this exists: the CLI runs the service offline on a FHIR Bundle, and the test suite builds the
hook requests of ``fhir_examples/`` from their bundles. Both need the answer a FHIR server would
give to the service's own prefetch templates (CDS Hooks 2.0 §Prefetch template,
https://cds-hooks.hl7.org/2.0/#prefetch-template) without running one.

It is deliberately a small subset of FHIR R4 search (https://hl7.org/fhir/R4/search.html), the
part CDS Hooks recommends for prefetch (§Prefetch query restrictions): an instance read, and a
type search on the patient reference plus token parameters. Anything outside that subset raises
``ValueError`` naming the offending part instead of being ignored, because silently dropping a
filter would hand the clinical core data the real server would not have sent (and a dropped
``patient`` filter would mix patients).

Semantics, as in FHIR R4:

* a comma inside one parameter value is OR; repeating a parameter is AND; ``\\,`` ``\\|`` and
  ``\\\\`` escape those characters inside a value;
* a token ``system|code`` matches a coding with that system and code, ``|code`` a coding without a
  system, ``code`` a coding with that code in any system, ``system|`` any code in that system;
* values are percent-decoded (``%7C`` is ``|``); ``+`` is kept literally because FHIR codes and
  instants may contain it;
* ``_count`` and ``_sort`` are accepted and ignored: every match is returned, in input order;
* when the same ``Type/id`` occurs more than once in the input, the last one wins, as when a
  transaction of ``PUT`` entries is loaded into a server.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["build_prefetch", "bundle_resources", "search_local"]

_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# FHIR R4 `code` search parameter paths that are not simply `<Type>.code`.
_CODE_PATHS: Mapping[str, str] = {
    "MedicationAdministration": "medicationCodeableConcept",
    "MedicationDispense": "medicationCodeableConcept",
    "MedicationRequest": "medicationCodeableConcept",
    "MedicationStatement": "medicationCodeableConcept",
}
# Types whose R4 `clinical-status` / `verification-status` parameters are CodeableConcepts.
_CLINICAL_STATUS_TYPES = frozenset({"Condition", "AllergyIntolerance"})
# Types without a `status` element (R4 defines no `status` search parameter for them).
_NO_STATUS_TYPES = _CLINICAL_STATUS_TYPES | {"Patient"}
_IGNORED_PARAMS = frozenset({"_count", "_sort"})


@dataclass(frozen=True)
class _Query:
    """One parsed prefetch query: a read when ``resource_id`` is set, else a search."""

    resource_type: str
    resource_id: str | None
    params: tuple[tuple[str, tuple[str, ...]], ...]


def search_local(resources: Iterable[Mapping[str, Any]], query: str) -> list[dict[str, Any]]:
    """Return deep copies of the resources a FHIR server would return for ``query``.

    ``query`` is an already-rendered relative FHIR URL: ``Patient/abc`` (read: a list of zero or
    one resource) or ``Condition?patient=abc&clinical-status=active`` (search). Raises
    ``ValueError`` for a malformed query, an unknown parameter, a parameter that does not apply to
    the resource type, or an empty value.
    """
    parsed = _parse_query(query)
    return [_copy(r) for r in _evaluate(_latest_by_key(resources), parsed)]


def build_prefetch(
    resources: Iterable[Mapping[str, Any]], queries: Mapping[str, str]
) -> dict[str, Any]:
    """Build a CDS Hooks ``prefetch`` object for rendered ``queries`` (key -> relative URL).

    A read yields the resource itself, or ``None`` when it does not exist (the caller decides
    whether to send the key at all). A search yields a ``searchset`` Bundle; with no match it has
    ``"total": 0`` and no ``entry`` key, because CDS Hooks output must not contain empty arrays.
    Every query is parsed before any is evaluated, so one bad template fails the whole call.
    """
    pool = _latest_by_key(resources)
    parsed = {key: _parse_query(q) for key, q in queries.items()}
    prefetch: dict[str, Any] = {}
    for key, query in parsed.items():
        matches = [_copy(r) for r in _evaluate(pool, query)]
        if query.resource_id is not None:
            prefetch[key] = matches[0] if matches else None
            continue
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
        }
        if matches:
            bundle["entry"] = [_search_entry(r) for r in matches]
        prefetch[key] = bundle
    return prefetch


def bundle_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the resources carried by any Bundle (transaction, batch, collection, searchset...).

    Entries without a ``resource`` (e.g. a transaction ``DELETE``) are skipped. Raises
    ``ValueError`` when ``bundle`` is not a Bundle or an entry's resource is not a JSON object.
    """
    if bundle.get("resourceType") != "Bundle":
        raise ValueError(f"expected a Bundle, got resourceType {bundle.get('resourceType')!r}")
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError("Bundle.entry must be an array")
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"Bundle.entry[{index}] must be an object")
        resource = entry.get("resource")
        if resource is None:
            continue
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise ValueError(f"Bundle.entry[{index}].resource is not a FHIR resource")
        out.append(dict(resource))
    return out


# ---- parsing ---------------------------------------------------------------------------------


def _parse_query(query: str) -> _Query:
    """Split a relative URL into type, id and decoded parameters; reject what we cannot answer."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("empty prefetch query")
    text = query.strip()
    text = text.removeprefix("/")
    path, _, raw_params = text.partition("?")
    if ":" in path:
        raise ValueError(f"prefetch query must be a relative URL: {query!r}")
    segments = path.split("/")
    resource_type = segments[0]
    if not _TYPE_RE.fullmatch(resource_type):
        raise ValueError(f"not a FHIR resource type: {resource_type!r}")
    if len(segments) == 2:
        resource_id = unquote(segments[1])
        if not _ID_RE.fullmatch(resource_id):
            raise ValueError(f"not a FHIR id: {resource_id!r}")
        if raw_params:
            raise ValueError(f"a read takes no parameters: {query!r}")
        return _Query(resource_type, resource_id, ())
    if len(segments) != 1:
        raise ValueError(f"unsupported query path {path!r} (expected 'Type' or 'Type/id')")
    params: list[tuple[str, tuple[str, ...]]] = []
    for part in raw_params.split("&") if raw_params else []:
        if not part:
            continue  # tolerate "a=1&&b=2" and a trailing "&"
        name, sep, raw_value = part.partition("=")
        name = unquote(name)
        if not sep:
            raise ValueError(f"search parameter {name!r} has no value")
        _check_param(resource_type, name)
        if name in _IGNORED_PARAMS:
            continue
        values = tuple(_split_escaped(unquote(raw_value), ","))
        if not values or any(v == "" for v in values):
            raise ValueError(f"search parameter {name!r} has an empty value")
        params.append((name, values))
    return _Query(resource_type, None, tuple(params))


def _check_param(resource_type: str, name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a supported parameter for ``resource_type``."""
    if name in _IGNORED_PARAMS or name == "_id":
        return
    applies: bool
    if name in ("patient", "subject", "code", "category"):
        applies = resource_type != "Patient"
    elif name == "status":
        applies = resource_type not in _NO_STATUS_TYPES
    elif name in ("clinical-status", "verification-status"):
        applies = resource_type in _CLINICAL_STATUS_TYPES
    else:
        raise ValueError(f"unsupported search parameter {name!r}")
    if not applies:
        raise ValueError(f"search parameter {name!r} is not supported for {resource_type}")


def _split_escaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` unless it is backslash-escaped (FHIR R4 search §Escaping).

    Escapes are kept in the parts so a value can be split again on another separator (``,`` then
    ``|``); :func:`_unescape` resolves them at the end.
    """
    parts: list[str] = []
    buf: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\":
            buf.append(ch)
            escaped = True
        elif ch == separator:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def _unescape(text: str) -> str:
    """Resolve ``\\,`` ``\\|`` ``\\$`` and ``\\\\``; any other backslash is kept as written."""
    return re.sub(r"\\([,|$\\])", r"\1", text)


def _parse_token(value: str) -> tuple[str | None, str | None]:
    """``system|code`` -> (system, code); ``|code`` -> ("", code); ``code`` -> (None, code).

    A system of ``""`` means "coding has no system", ``None`` means "any system"; a code of
    ``None`` (from ``system|``) means any code in that system.
    """
    parts = [_unescape(p) for p in _split_escaped(value, "|")]
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2 and any(parts):
        system, code = parts
        return system, (code or None)
    raise ValueError(f"malformed token {value!r}")


# ---- evaluation ------------------------------------------------------------------------------


def _latest_by_key(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Keep input order, but a later resource with the same ``Type/id`` replaces an earlier one."""
    keyed: dict[tuple[str, str] | int, Mapping[str, Any]] = {}
    for index, resource in enumerate(resources):
        rtype, rid = resource.get("resourceType"), resource.get("id")
        key: tuple[str, str] | int = (
            (rtype, rid) if isinstance(rtype, str) and isinstance(rid, str) else index
        )
        keyed[key] = resource  # a dict keeps the first position and takes the last value
    return list(keyed.values())


def _evaluate(pool: Iterable[Mapping[str, Any]], query: _Query) -> list[Mapping[str, Any]]:
    """Filter ``pool`` by type, then by id (read) or by every parameter (AND of ORs)."""
    of_type = [r for r in pool if r.get("resourceType") == query.resource_type]
    if query.resource_id is not None:
        return [r for r in of_type if r.get("id") == query.resource_id][:1]
    predicates = [_predicate(query.resource_type, name, values) for name, values in query.params]
    return [r for r in of_type if all(p(r) for p in predicates)]


_Predicate = Callable[[Mapping[str, Any]], bool]


def _predicate(resource_type: str, name: str, values: tuple[str, ...]) -> _Predicate:
    """Compile one parameter (its comma-separated values OR-ed) into a resource predicate."""
    if name == "_id":
        ids = frozenset(_unescape(v) for v in values)
        return lambda r: r.get("id") in ids
    if name == "patient":
        targets = [_parse_reference_value(_unescape(v), "Patient") for v in values]
        return lambda r: any(
            _reference_matches(r.get(field), targets) for field in ("subject", "patient")
        )
    if name == "subject":
        targets = [_parse_reference_value(_unescape(v), None) for v in values]
        return lambda r: _reference_matches(r.get("subject"), targets)
    tokens = [_parse_token(v) for v in values]
    if name == "status":
        return lambda r: _code_matches(r.get("status"), tokens)
    if name == "code":
        path = _CODE_PATHS.get(resource_type, "code")
        return lambda r: _concepts_match(r.get(path), tokens)
    if name == "category":
        return lambda r: _concepts_match(r.get("category"), tokens)
    if name == "clinical-status":
        return lambda r: _concepts_match(r.get("clinicalStatus"), tokens)
    if name == "verification-status":
        return lambda r: _concepts_match(r.get("verificationStatus"), tokens)
    raise ValueError(f"unsupported search parameter {name!r}")  # pragma: no cover - pre-checked


def _parse_reference_value(value: str, required_type: str | None) -> tuple[str | None, str]:
    """``abc`` -> (None, "abc"); ``Patient/abc`` -> ("Patient", "abc"); reject other forms."""
    if "/" not in value:
        if not _ID_RE.fullmatch(value):
            raise ValueError(f"not a FHIR id in reference parameter: {value!r}")
        return required_type, value
    rtype, _, rid = value.rpartition("/")
    rtype = rtype.rsplit("/", 1)[-1]  # tolerate an absolute base URL before Type/id
    if not _TYPE_RE.fullmatch(rtype) or not _ID_RE.fullmatch(rid):
        raise ValueError(f"not a FHIR reference: {value!r}")
    if required_type is not None and rtype != required_type:
        raise ValueError(f"reference parameter must point at {required_type}: {value!r}")
    return rtype, rid


def _reference_matches(reference: Any, targets: list[tuple[str | None, str]]) -> bool:
    """True when a Reference (``Type/id``, absolute, or ``.../_history/n``) hits a target."""
    if not isinstance(reference, Mapping):
        return False
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return False
    segments = ref.split("/")
    if len(segments) >= 4 and segments[-2] == "_history":
        segments = segments[:-2]
    if len(segments) < 2:
        return False
    rtype, rid = segments[-2], segments[-1]
    return any(rid == tid and (ttype is None or rtype == ttype) for ttype, tid in targets)


def _code_matches(code: Any, tokens: list[tuple[str | None, str | None]]) -> bool:
    """Match a primitive ``code`` element (e.g. ``status``); a token's system is not checked."""
    return isinstance(code, str) and any(tcode is None or code == tcode for _, tcode in tokens)


def _concepts_match(element: Any, tokens: list[tuple[str | None, str | None]]) -> bool:
    """Match a CodeableConcept, or a list of them (e.g. ``category``), against any token."""
    concepts = element if isinstance(element, list) else [element]
    for concept in concepts:
        if not isinstance(concept, Mapping):
            continue
        codings = concept.get("coding")
        if not isinstance(codings, list):
            continue
        for coding in codings:
            if isinstance(coding, Mapping) and any(_coding_matches(coding, t) for t in tokens):
                return True
    return False


def _coding_matches(coding: Mapping[str, Any], token: tuple[str | None, str | None]) -> bool:
    system, code = token
    if code is not None and coding.get("code") != code:
        return False
    if system is None:
        return True
    if system == "":
        return not coding.get("system")
    return bool(coding.get("system") == system)


def _copy(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy as a plain dict, so callers can mutate results without touching the input."""
    return {key: copy.deepcopy(value) for key, value in resource.items()}


def _search_entry(resource: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    rid = resource.get("id")
    if isinstance(rid, str):
        entry["fullUrl"] = f"{resource['resourceType']}/{rid}"
    entry["resource"] = resource
    entry["search"] = {"mode": "match"}
    return entry
