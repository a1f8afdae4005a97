"""The JSON Schemas (draft 2020-12) of CDS Hooks 2.0 documents, shipped with the package.

Validators are compiled once per process. Request errors become :class:`InvalidRequest` naming
the JSON path of the best-matching error; the message is cut short because it may quote the
offending value back to the caller, and it is never logged.

Every hook call is validated, and ``jsonschema``'s interpreter took about 0.45 ms of a 100-resource
call. So a document is first checked by ``fastjsonschema``, which compiles the same schema into
Python code once (about 15x faster); only a document it refuses goes through ``jsonschema``,
which stays the reference and words the error. fastjsonschema speaks draft-07, so the schema is
translated: ``dependentRequired`` becomes draft-07 ``dependencies`` (same meaning for a list of
names) and ``$defs`` references stay plain JSON pointers. A schema using any keyword whose
meaning differs between the drafts is refused at compile time rather than checked wrongly, and
the tests hold both validators to the same verdict on every valid and invalid test document.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from service.errors import InvalidRequest

HOOK_REQUEST = "hook-request"
HOOK_RESPONSE = "hook-response"
DISCOVERY_RESPONSE = "discovery-response"
FEEDBACK_REQUEST = "feedback-request"
_MESSAGE_LIMIT = 200


@cache
def schema(name: str) -> dict[str, Any]:
    """The parsed schema document ``name`` (e.g. ``hook-request``)."""
    text = (
        resources.files("service.cdshooks")
        .joinpath(f"schemas/{name}.schema.json")
        .read_text("utf-8")
    )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def validator(name: str) -> Draft202012Validator:
    """A compiled validator for schema ``name``."""
    return Draft202012Validator(schema(name))


# Keywords that mean the same in draft 2020-12 and draft-07, or are annotations only.
_SAME_IN_DRAFT_7 = frozenset(
    {
        "$comment", "$defs", "$id", "$ref", "$schema", "additionalProperties", "allOf",
        "anyOf", "const", "contains", "default", "dependentRequired", "description", "else", "enum",
        "examples", "exclusiveMaximum", "exclusiveMinimum", "if", "maxItems", "maxLength",
        "maxProperties", "maximum", "minItems", "minLength", "minProperties", "minimum",
        "multipleOf", "not", "oneOf", "pattern", "patternProperties", "properties",
        "propertyNames", "required", "then", "title", "type", "uniqueItems",
    }
)  # fmt: skip
_NAME_MAPS = frozenset({"properties", "$defs", "patternProperties", "dependentRequired"})


def _as_draft_7(node: Any) -> Any:
    """``node`` (a 2020-12 schema) as the equivalent draft-07 schema for fastjsonschema."""
    if isinstance(node, list):
        return [_as_draft_7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _SAME_IN_DRAFT_7 and key not in ("items", "format"):
            raise ValueError(f"schema keyword {key!r} has no draft-07 equivalent here")
        if key == "items" and not isinstance(value, dict):
            raise ValueError("array-form items means something else in draft-07")
        if key in ("$schema", "$id", "format"):
            continue  # format is an annotation in 2020-12 but an assertion in fastjsonschema
        if key == "dependentRequired":
            out["dependencies"] = value
        elif key in _NAME_MAPS:
            out[key] = {name: _as_draft_7(sub) for name, sub in value.items()}
        else:
            out[key] = _as_draft_7(value)
    return out


@cache
def fast_check(name: str) -> Callable[[Any], Any] | None:
    """Schema ``name`` compiled by fastjsonschema (raises ``JsonSchemaException`` when invalid).

    ``None`` when the schema uses a keyword without a draft-07 equivalent (the response and
    discovery schemas use ``minContains``): such documents are checked by jsonschema alone.
    """
    try:
        draft_7 = _as_draft_7(schema(name))
    except ValueError:
        return None
    check: Callable[[Any], Any] = fastjsonschema.compile(draft_7)
    return check


def conforms(name: str, document: Any) -> bool:
    """Whether ``document`` conforms to schema ``name``."""
    check = fast_check(name)
    if check is None:
        return validator(name).is_valid(document)
    try:
        check(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def validate(name: str, document: Any) -> None:
    """Raise :class:`InvalidRequest` if ``document`` does not conform to schema ``name``."""
    if conforms(name, document):
        return
    error = best_match(validator(name).iter_errors(document))
    if error is None:
        return
    message = error.message
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 1] + "…"
    raise InvalidRequest(
        f"the request is not a valid CDS Hooks 2.0 request at {error.json_path}: {message}"
    )


def errors(name: str, document: Any) -> list[str]:
    """Every violation of schema ``name`` as ``path: message`` lines (for tests and tools)."""
    return [f"{e.json_path}: {e.message}" for e in validator(name).iter_errors(document)]
