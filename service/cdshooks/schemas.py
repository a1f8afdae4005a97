"""The JSON Schemas (draft 2020-12) of CDS Hooks 2.0 documents, shipped with the package.

Validators are compiled once per process. Request errors become :class:`InvalidRequest` naming
the JSON path of the best-matching error; the message is cut short because it may quote the
offending value back to the caller, and it is never logged.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

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


def validate(name: str, document: Any) -> None:
    """Raise :class:`InvalidRequest` if ``document`` does not conform to schema ``name``."""
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
