"""Tests for the CDS Hooks 2.0 JSON Schemas shipped in service/cdshooks/schemas.

Invalid instances are built as single, small changes to a known-valid document, and each
one must fail on the JSON Schema keyword we expect. That way a case cannot pass "by
accident" because some unrelated part of the test data is broken.

Format assertion is left off everywhere (the 2020-12 default): "format" is only an
annotation, and the real checks are carried by "pattern".
"""

from __future__ import annotations

import copy
import functools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from service.cdshooks import schemas

SCHEMA_DIR = Path(__file__).parents[1] / "service/cdshooks/schemas"
SCHEMA_NAMES = ("hook-request", "hook-response", "discovery-response", "feedback-request")
ID_BASE = "https://epidural-cds.example.org/schemas/"

DELETE = object()  # sentinel for change(): remove the member instead of setting it

# --------------------------------------------------------------------------- helpers


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def _flatten(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        yield error
        yield from _flatten(iter(error.context or ()))


def all_errors(name: str, instance: Any) -> list[ValidationError]:
    return list(_flatten(validator(name).iter_errors(instance)))


def assert_valid(name: str, instance: Any) -> None:
    errors = all_errors(name, instance)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The service checks with a compiled draft-07 translation first: same verdict required.
    assert schemas.conforms(name, instance), f"{name}: the fast check refuses a valid instance"


def assert_invalid(name: str, instance: Any, keyword: str) -> None:
    errors = all_errors(name, instance)
    assert errors, f"{name}: instance unexpectedly valid"
    assert not schemas.conforms(name, instance), f"{name}: the fast check accepts it"
    keywords = {e.validator for e in errors}
    assert keyword in keywords, f"{name}: expected a {keyword!r} failure, got " + "; ".join(
        f"{e.validator} at {list(e.absolute_path)}: {e.message}" for e in errors
    )


def change(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """Return a deep copy of document with the member at path set to value (or deleted)."""
    result = copy.deepcopy(document)
    target = result
    for step in path[:-1]:
        target = target[step]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return result


# ------------------------------------------------------------------- schema files


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{ID_BASE}{name}.schema.json"
    assert schema["title"].strip()
    assert schema["description"].strip()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_local_refs_resolve_and_defs_are_used(name: str) -> None:
    schema = load_schema(name)
    refs = set(_refs(schema))
    for ref in refs:
        assert ref.startswith("#/"), f"only local references are expected, got {ref}"
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        assert isinstance(target, dict)
    unused = {f"#/$defs/{key}" for key in schema.get("$defs", {})} - refs
    assert not unused, f"unused $defs: {sorted(unused)}"


# ------------------------------------------------------------------- hook request

# The patient-view request printed in the CDS Hooks 2.0 specification (section
# "Calling a CDS Service", Example).
SPEC_REQUEST: dict[str, Any] = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://hooks.smarthealthit.org:9080",
    "hook": "patient-view",
    "fhirAuthorization": {
        "access_token": "some-opaque-fhir-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read user/Observation.read",
        "subject": "cds-service4",
    },
    "context": {
        "userId": "Practitioner/example",
        "patientId": "1288992",
        "encounterId": "89284",
    },
    "prefetch": {
        "patientToGreet": {
            "resourceType": "Patient",
            "gender": "male",
            "birthDate": "1925-12-23",
            "id": "1288992",
            "active": True,
        }
    },
}

# The spec example plus prefetch results a client returns when it found nothing: null
# for a read and an empty searchset Bundle for a search.
REQUEST: dict[str, Any] = change(
    SPEC_REQUEST,
    ("prefetch",),
    {
        **SPEC_REQUEST["prefetch"],
        "epiduralProcedure": None,
        "recentTemperatures": {"resourceType": "Bundle", "type": "searchset", "total": 0},
    },
)

ORDER_SELECT_REQUEST: dict[str, Any] = {
    "hook": "order-select",
    "hookInstance": "8f1e4f2c-3b4d-4e55-9c1f-1c0f3a7e2b10",
    "context": {
        "userId": "PractitionerRole/123",
        "patientId": "1288992",
        "encounterId": "89284",
        "selections": ["MedicationRequest/103"],
        "draftOrders": {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "103",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/1288992"},
                    }
                }
            ],
        },
    },
}

ORDER_SIGN_REQUEST: dict[str, Any] = {
    "hook": "order-sign",
    "hookInstance": "4a74b1d0-4fee-4d18-b76f-7f3bd361e4bc",
    "fhirServer": "https://ehr.example.org/fhir",
    "context": {
        "userId": "PractitionerRole/123",
        "patientId": "1288992",
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "sr-1"}}],
        },
    },
    "prefetch": {
        "orders": {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": "https://ehr.example.org/fhir/x?_page=2"}],
        }
    },
}


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param(SPEC_REQUEST, id="spec-example"),
        pytest.param(REQUEST, id="spec-example-with-null-and-empty-prefetch"),
        pytest.param(
            {
                "hook": "patient-view",
                "hookInstance": "3a5b1e3a-0d8f-4c58-8c1e-62c3f1f0f3a1",
                "context": {"userId": "Practitioner/1", "patientId": "p1"},
            },
            id="minimal-patient-view",
        ),
        pytest.param(change(REQUEST, ("fhirAuthorization",), DELETE), id="server-without-auth"),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "patient"), "1288992"), id="auth-with-patient"
        ),
        pytest.param(change(REQUEST, ("prefetch",), DELETE), id="no-prefetch"),
        pytest.param(change(REQUEST, ("prefetch",), {}), id="empty-prefetch-object"),
        pytest.param(change(REQUEST, ("hookInstance",), "call-42"), id="non-uuid-hookInstance"),
        pytest.param(
            change(REQUEST, ("extension",), {"org.example.trace": {"id": "t1"}}),
            id="extension",
        ),
        pytest.param(change(REQUEST, ("someFutureField",), [1, 2]), id="unknown-top-level"),
        pytest.param(
            change(REQUEST, ("context", "org.example.ward"), "ICU"), id="unknown-context-field"
        ),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "refresh"), "x"), id="unknown-auth-field"
        ),
        pytest.param(
            {"hook": "org.example.custom", "hookInstance": "x", "context": {}},
            id="unknown-hook-any-context",
        ),
        pytest.param(
            change(REQUEST, ("context", "userId"), "PractitionerRole/abc-1.2"),
            id="practitioner-role-user",
        ),
        pytest.param(change(REQUEST, ("context", "userId"), "Patient/1288992"), id="patient-user"),
        pytest.param(
            change(REQUEST, ("context", "userId"), "RelatedPerson/rp1"), id="related-person-user"
        ),
        pytest.param(change(REQUEST, ("context", "encounterId"), DELETE), id="no-encounter"),
        pytest.param(change(REQUEST, ("context", "patientId"), "a" * 64), id="64-char-id"),
        pytest.param(ORDER_SELECT_REQUEST, id="order-select"),
        pytest.param(ORDER_SIGN_REQUEST, id="order-sign"),
        pytest.param(
            change(ORDER_SIGN_REQUEST, ("context", "draftOrders", "type"), DELETE),
            id="order-sign-bundle-without-type",
        ),
        pytest.param(
            change(
                ORDER_SIGN_REQUEST,
                ("context", "draftOrders"),
                {"resourceType": "MedicationRequest", "id": "single", "status": "draft"},
            ),
            id="order-sign-single-resource-not-bundle",
        ),
    ],
)
def test_request_valid(instance: dict[str, Any]) -> None:
    assert_valid("hook-request", instance)


@pytest.mark.parametrize(
    ("instance", "keyword"),
    [
        pytest.param(
            change(REQUEST, ("fhirServer",), DELETE), "dependentRequired", id="auth-without-server"
        ),
        pytest.param(change(REQUEST, ("hook",), DELETE), "required", id="missing-hook"),
        pytest.param(
            change(REQUEST, ("hookInstance",), DELETE), "required", id="missing-hookInstance"
        ),
        pytest.param(change(REQUEST, ("context",), DELETE), "required", id="missing-context"),
        pytest.param(change(REQUEST, ("hook",), ""), "minLength", id="empty-hook"),
        pytest.param(change(REQUEST, ("hookInstance",), ""), "minLength", id="empty-hookInstance"),
        pytest.param(change(REQUEST, ("hook",), None), "type", id="null-hook"),
        pytest.param(change(REQUEST, ("context",), "Patient/1"), "type", id="context-not-object"),
        pytest.param(
            change(REQUEST, ("fhirServer",), "hooks.example.org/fhir"), "pattern", id="no-scheme"
        ),
        pytest.param(change(REQUEST, ("fhirServer",), None), "type", id="null-server"),
        pytest.param(change(REQUEST, ("fhirAuthorization",), "tok"), "type", id="auth-string"),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "access_token"), DELETE),
            "required",
            id="auth-without-token",
        ),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "subject"), DELETE),
            "required",
            id="auth-without-subject",
        ),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "token_type"), "bearer"),
            "const",
            id="token-type-lowercase",
        ),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "expires_in"), "300"),
            "type",
            id="expires-in-string",
        ),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "expires_in"), 1.5),
            "type",
            id="expires-in-fraction",
        ),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "expires_in"), -1),
            "minimum",
            id="expires-in-negative",
        ),
        pytest.param(
            change(REQUEST, ("fhirAuthorization", "scope"), ["user/Patient.read"]),
            "type",
            id="scope-array",
        ),
        pytest.param(change(REQUEST, ("context", "userId"), DELETE), "required", id="no-userId"),
        pytest.param(
            change(REQUEST, ("context", "patientId"), DELETE), "required", id="no-patientId"
        ),
        pytest.param(
            change(REQUEST, ("context", "userId"), "example"), "pattern", id="userId-without-type"
        ),
        pytest.param(
            change(REQUEST, ("context", "userId"), "Device/1"), "pattern", id="userId-wrong-type"
        ),
        pytest.param(
            change(REQUEST, ("context", "userId"), "Practitioner/"), "pattern", id="userId-no-id"
        ),
        pytest.param(
            change(REQUEST, ("context", "userId"), "https://ehr/Practitioner/1"),
            "pattern",
            id="userId-absolute",
        ),
        pytest.param(
            change(REQUEST, ("context", "patientId"), "Patient/1288992"),
            "pattern",
            id="patientId-as-reference",
        ),
        pytest.param(
            change(REQUEST, ("context", "patientId"), "12 88"), "pattern", id="patientId-space"
        ),
        pytest.param(
            change(REQUEST, ("context", "patientId"), "a" * 65), "pattern", id="patientId-65-chars"
        ),
        pytest.param(
            change(REQUEST, ("context", "patientId"), ""), "pattern", id="patientId-empty"
        ),
        pytest.param(
            change(REQUEST, ("context", "patientId"), 1288992), "type", id="patientId-int"
        ),
        pytest.param(
            change(REQUEST, ("context", "encounterId"), "Encounter/89284"),
            "pattern",
            id="encounterId-as-reference",
        ),
        # The spec's "example prefetch data" shows "user": "123"; a bare string is not a
        # FHIR resource, so we refuse it.
        pytest.param(
            change(REQUEST, ("prefetch", "user"), "123"), "type", id="prefetch-bare-string"
        ),
        pytest.param(
            change(REQUEST, ("prefetch", "patientToGreet", "resourceType"), DELETE),
            "required",
            id="prefetch-without-resourceType",
        ),
        pytest.param(change(REQUEST, ("prefetch", "x"), []), "type", id="prefetch-array"),
        pytest.param(change(REQUEST, ("prefetch",), None), "type", id="prefetch-null"),
        pytest.param(change(REQUEST, ("extension",), "x"), "type", id="extension-not-object"),
        pytest.param(
            change(ORDER_SELECT_REQUEST, ("context", "selections"), DELETE),
            "required",
            id="order-select-no-selections",
        ),
        pytest.param(
            change(ORDER_SELECT_REQUEST, ("context", "selections"), []),
            "minItems",
            id="order-select-empty-selections",
        ),
        pytest.param(
            change(ORDER_SELECT_REQUEST, ("context", "selections"), ["103"]),
            "pattern",
            id="order-select-bare-selection",
        ),
        pytest.param(
            change(ORDER_SELECT_REQUEST, ("context", "userId"), "Patient/1"),
            "pattern",
            id="order-select-patient-user",
        ),
        pytest.param(
            change(ORDER_SELECT_REQUEST, ("context", "draftOrders"), DELETE),
            "required",
            id="order-select-no-draftOrders",
        ),
        pytest.param(
            change(ORDER_SIGN_REQUEST, ("context", "draftOrders"), DELETE),
            "required",
            id="order-sign-no-draftOrders",
        ),
        pytest.param(
            change(ORDER_SIGN_REQUEST, ("context", "draftOrders", "resourceType"), "Parameters"),
            "enum",
            id="order-sign-draftOrders-not-bundle",
        ),
        pytest.param(
            change(ORDER_SIGN_REQUEST, ("context", "patientId"), DELETE),
            "required",
            id="order-sign-no-patientId",
        ),
    ],
)
def test_request_invalid(instance: dict[str, Any], keyword: str) -> None:
    assert_invalid("hook-request", instance, keyword)


@pytest.mark.parametrize("body", [None, [], "patient-view", 42])
def test_request_body_must_be_object(body: Any) -> None:
    assert_invalid("hook-request", body, "type")


# ------------------------------------------------------------------ hook response

TOPIC = {
    "system": "https://epidural-cds.example.org/CodeSystem/topic",
    "code": "post-epidural-hematoma",
    "display": "Spinal epidural hematoma risk",
}

# A complete critical card exercising every member the response schema knows.
CARD: dict[str, Any] = {
    "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
    "summary": "New leg weakness after epidural catheter removal: rule out epidural hematoma",
    "detail": "Motor block **worsening** 6 h after catheter removal.\n\n- Urgent MRI",
    "indicator": "critical",
    "source": {
        "label": "Epidural complication rules",
        "url": "https://epidural-cds.example.org/about",
        "icon": "https://epidural-cds.example.org/img/icon-100px.png",
        "topic": TOPIC,
    },
    "suggestions": [
        {
            "label": "Order urgent spine MRI",
            "uuid": "e56e1945-20b3-4393-8503-a1a20fd73152",
            "isRecommended": True,
            "actions": [
                {
                    "type": "create",
                    "description": "Create an urgent MRI order",
                    "resource": {"resourceType": "ServiceRequest", "status": "draft"},
                },
                {
                    "type": "update",
                    "description": "Hold the scheduled enoxaparin dose",
                    "resource": {"resourceType": "MedicationRequest", "id": "rx-1"},
                },
                {
                    "type": "delete",
                    "description": "Remove the pending physiotherapy order",
                    "resourceId": "ServiceRequest/physio-1",
                },
            ],
        },
        {"label": "Page the anaesthetist on call", "uuid": "0b8e2c3e-3d9e-4b0a-9f55-5b0c3d1b1a2f"},
    ],
    "selectionBehavior": "at-most-one",
    "overrideReasons": [
        {
            "code": "already-assessed",
            "system": "https://epidural-cds.example.org/CodeSystem/override-reason",
            "display": "Already assessed by anaesthesia",
        }
    ],
    "links": [
        {
            "label": "Neuraxial anticoagulation guideline",
            "url": "https://guidelines.example.org/neuraxial?section=4#removal",
            "type": "absolute",
        },
        {
            "label": "Neuro check app",
            "url": "https://smart.example.org/launch",
            "type": "smart",
            "appContext": '{"check":"bromage"}',
            "autolaunchable": False,
        },
    ],
    "extension": {"org.example.rule": {"id": "EPI-007"}},
}

RESPONSE: dict[str, Any] = {
    "cards": [CARD],
    "systemActions": [
        {
            "type": "update",
            "description": "Flag the epidural catheter for review",
            "resource": {"resourceType": "Flag", "id": "f1"},
        }
    ],
    "extension": {"org.example.engine": {"version": "1"}},
}

# First example response of the CDS Hooks 2.0 specification.
SPEC_RESPONSE: dict[str, Any] = {
    "cards": [
        {
            "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "summary": "Example Card",
            "indicator": "info",
            "detail": "This is an example card.",
            "source": {
                "label": "Static CDS Service Example",
                "url": "https://example.com",
                "icon": "https://example.com/img/icon-100px.png",
            },
            "links": [
                {"label": "Google", "url": "https://google.com", "type": "absolute"},
                {"label": "Github", "url": "https://github.com", "type": "absolute"},
                {
                    "label": "SMART Example App",
                    "url": "https://smart.example.com/launch",
                    "type": "smart",
                    "appContext": '{"session":3456356,"settings":{"module":4235}}',
                },
            ],
        },
        {
            "summary": "Another card",
            "indicator": "warning",
            "source": {"label": "Static CDS Service Example"},
            "overrideReasons": [
                {
                    "code": "reason-code-provided-by-service",
                    "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons",
                    "display": "Patient refused",
                },
                {
                    "code": "12354",
                    "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons",
                    "display": "Contraindicated",
                },
            ],
        },
    ]
}

C = ("cards", 0)  # path prefix of the card inside RESPONSE
SUGG0 = (*C, "suggestions", 0)
ACT = (*SUGG0, "actions")


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param({"cards": []}, id="no-guidance"),
        pytest.param(RESPONSE, id="full-critical-card"),
        pytest.param(SPEC_RESPONSE, id="spec-example"),
        pytest.param(
            {
                "cards": [
                    {
                        "summary": "Epidural in place for more than 72 hours",
                        "indicator": "info",
                        "source": {"label": "Epidural rules"},
                    }
                ]
            },
            id="minimal-card",
        ),
        pytest.param(change(RESPONSE, (*C, "summary"), "x" * 139), id="summary-139-chars"),
        pytest.param(change(RESPONSE, (*C, "summary"), "é" * 139), id="summary-139-non-ascii"),
        pytest.param(change(RESPONSE, ("systemActions",), DELETE), id="no-systemActions"),
        pytest.param(
            change(RESPONSE, (*C, "source", "topic", "display"), DELETE), id="topic-no-display"
        ),
        pytest.param(
            change(
                change(RESPONSE, (*C, "selectionBehavior"), "any"),
                (*C, "suggestions", 1, "isRecommended"),
                True,
            ),
            id="any-with-two-recommended",
        ),
        pytest.param(
            change(RESPONSE, (*C, "suggestions", 1, "isRecommended"), False),
            id="at-most-one-with-one-recommended",
        ),
        pytest.param(
            change(RESPONSE, (*C, "uuid"), "4E0A3A1E-3283-4575-AB82-028D55FE2719"),
            id="uppercase-uuid",
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 1, "appContext"), DELETE), id="smart-no-appContext"
        ),
    ],
)
def test_response_valid(instance: dict[str, Any]) -> None:
    assert_valid("hook-response", instance)


@pytest.mark.parametrize(
    ("instance", "keyword"),
    [
        pytest.param({}, "required", id="missing-cards"),
        pytest.param({"cards": None}, "type", id="null-cards"),
        pytest.param(
            change(RESPONSE, ("systemActions",), []), "minItems", id="empty-systemActions"
        ),
        pytest.param(change(RESPONSE, ("systemActions",), None), "type", id="null-systemActions"),
        pytest.param(change(RESPONSE, ("extension",), {}), "minProperties", id="empty-extension"),
        pytest.param(change(RESPONSE, ("extension",), None), "type", id="null-extension"),
        pytest.param(change(RESPONSE, ("Cards",), []), "additionalProperties", id="unknown-top"),
        # card
        pytest.param(change(RESPONSE, (*C, "summary"), "x" * 140), "maxLength", id="summary-140"),
        pytest.param(change(RESPONSE, (*C, "summary"), ""), "minLength", id="summary-empty"),
        pytest.param(change(RESPONSE, (*C, "summary"), "   "), "pattern", id="summary-blank"),
        pytest.param(change(RESPONSE, (*C, "summary"), DELETE), "required", id="no-summary"),
        pytest.param(change(RESPONSE, (*C, "detail"), None), "type", id="detail-null"),
        pytest.param(change(RESPONSE, (*C, "detail"), ""), "minLength", id="detail-empty"),
        pytest.param(change(RESPONSE, (*C, "links"), []), "minItems", id="links-empty"),
        pytest.param(change(RESPONSE, (*C, "suggestions"), []), "minItems", id="suggestions-empty"),
        pytest.param(
            change(RESPONSE, (*C, "overrideReasons"), []), "minItems", id="overrideReasons-empty"
        ),
        pytest.param(
            change(RESPONSE, (*C, "selectionBehavior"), DELETE),
            "dependentRequired",
            id="suggestions-without-selectionBehavior",
        ),
        pytest.param(
            change(RESPONSE, (*C, "selectionBehavior"), "all"), "enum", id="selectionBehavior-all"
        ),
        pytest.param(
            change(RESPONSE, (*C, "suggestions", 1, "isRecommended"), True),
            "maxContains",
            id="at-most-one-with-two-recommended",
        ),
        pytest.param(
            change(RESPONSE, (*C, "indicator"), "hard-stop"), "enum", id="indicator-hard-stop"
        ),
        pytest.param(change(RESPONSE, (*C, "indicator"), DELETE), "required", id="no-indicator"),
        pytest.param(change(RESPONSE, (*C, "uuid"), "card-1"), "pattern", id="uuid-not-uuid"),
        pytest.param(change(RESPONSE, (*C, "uuid"), ""), "pattern", id="uuid-empty"),
        pytest.param(
            change(RESPONSE, (*C, "priority"), 1), "additionalProperties", id="unknown-on-card"
        ),
        pytest.param(change(RESPONSE, (*C, "extension"), {}), "minProperties", id="card-ext-empty"),
        # source
        pytest.param(change(RESPONSE, (*C, "source"), DELETE), "required", id="no-source"),
        pytest.param(
            change(RESPONSE, (*C, "source", "label"), DELETE), "required", id="source-no-label"
        ),
        pytest.param(
            change(RESPONSE, (*C, "source", "url"), "/about"), "pattern", id="source-relative-url"
        ),
        pytest.param(
            change(RESPONSE, (*C, "source", "icon"), "ftp://example.org/i.png"),
            "pattern",
            id="source-icon-ftp",
        ),
        pytest.param(
            change(RESPONSE, (*C, "source", "url"), "https://"), "pattern", id="source-url-no-host"
        ),
        pytest.param(
            change(RESPONSE, (*C, "source", "logo"), "x"),
            "additionalProperties",
            id="unknown-on-source",
        ),
        pytest.param(
            change(RESPONSE, (*C, "source", "topic", "system"), DELETE),
            "required",
            id="topic-no-system",
        ),
        pytest.param(
            change(RESPONSE, (*C, "source", "topic", "display"), None),
            "type",
            id="topic-display-null",
        ),
        pytest.param(
            change(RESPONSE, (*C, "source", "topic", "version"), "1"),
            "additionalProperties",
            id="unknown-on-coding",
        ),
        # override reasons
        pytest.param(
            change(RESPONSE, (*C, "overrideReasons", 0, "display"), DELETE),
            "required",
            id="overrideReason-without-display",
        ),
        pytest.param(
            change(RESPONSE, (*C, "overrideReasons", 0, "code"), DELETE),
            "required",
            id="overrideReason-without-code",
        ),
        # suggestions
        pytest.param(change(RESPONSE, (*SUGG0, "label"), DELETE), "required", id="sugg-no-label"),
        pytest.param(change(RESPONSE, (*SUGG0, "actions"), []), "minItems", id="actions-empty"),
        pytest.param(
            change(RESPONSE, (*SUGG0, "isRecommended"), "yes"), "type", id="isRecommended-string"
        ),
        pytest.param(
            change(RESPONSE, (*SUGG0, "selected"), True),
            "additionalProperties",
            id="unknown-on-suggestion",
        ),
        # actions
        pytest.param(
            change(RESPONSE, (*ACT, 0, "description"), DELETE),
            "required",
            id="action-without-description",
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 0, "description"), ""), "minLength", id="description-empty"
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 0, "type"), "remove"), "enum", id="action-type-unknown"
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 0, "resource"), DELETE), "required", id="create-no-resource"
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 1, "resource"), DELETE), "required", id="update-no-resource"
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 0, "resource"), {"id": "x"}),
            "required",
            id="resource-without-resourceType",
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 2, "resource"), {"resourceType": "ServiceRequest"}),
            "not",
            id="delete-with-resource",
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 2, "resourceId"), DELETE),
            "required",
            id="delete-without-resourceId",
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 2, "resourceId"), "physio-1"),
            "pattern",
            id="resourceId-bare-id",
        ),
        pytest.param(
            change(RESPONSE, (*ACT, 0, "uuid"), "x"),
            "additionalProperties",
            id="unknown-on-action",
        ),
        pytest.param(
            change(RESPONSE, ("systemActions", 0, "description"), DELETE),
            "required",
            id="systemAction-without-description",
        ),
        # links
        pytest.param(
            change(RESPONSE, (*C, "links", 0, "appContext"), "{}"),
            "const",
            id="appContext-on-absolute-link",
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 0, "type"), "external"), "enum", id="link-type-unknown"
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 0, "type"), DELETE), "required", id="link-no-type"
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 0, "url"), "www.example.org"),
            "pattern",
            id="link-url-no-scheme",
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 0, "label"), None), "type", id="link-label-null"
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 1, "appContext"), ""), "minLength", id="appContext-empty"
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 1, "autolaunchable"), "true"),
            "type",
            id="autolaunchable-string",
        ),
        pytest.param(
            change(RESPONSE, (*C, "links", 0, "target"), "_blank"),
            "additionalProperties",
            id="unknown-on-link",
        ),
    ],
)
def test_response_invalid(instance: dict[str, Any], keyword: str) -> None:
    assert_invalid("hook-response", instance, keyword)


def test_spec_system_action_example_is_rejected_for_missing_description() -> None:
    # The 2.0 spec's own systemActions example leaves out the REQUIRED description.
    spec_example = {
        "cards": [],
        "systemActions": [
            {
                "type": "update",
                "resource": {"resourceType": "ServiceRequest", "id": "example-MRI-59879846"},
            }
        ],
    }
    assert_invalid("hook-response", spec_example, "required")


# -------------------------------------------------------------- discovery response

SPEC_DISCOVERY: dict[str, Any] = {
    "services": [
        {
            "hook": "patient-view",
            "title": "Static CDS Service Example",
            "description": "An example of a CDS Service that returns a static set of cards",
            "id": "static-patient-greeter",
            "prefetch": {"patientToGreet": "Patient/{{context.patientId}}"},
        },
        {
            "hook": "order-select",
            "title": "Order Echo CDS Service",
            "description": "An example of a CDS Service that simply echoes the order(s) "
            "being placed",
            "id": "order-echo",
            "prefetch": {
                "patient": "Patient/{{context.patientId}}",
                "medications": "MedicationRequest?patient={{context.patientId}}",
            },
        },
        {
            "hook": "order-sign",
            "title": "Pharmacogenomics CDS Service",
            "description": "An example of a more advanced, precision medicine CDS Service",
            "id": "pgx-on-order-sign",
            "usageRequirements": "Note: functionality of this CDS Service is degraded without "
            "access to a FHIR Restful API as part of CDS recommendation generation.",
        },
    ]
}

DISCOVERY: dict[str, Any] = {
    "services": [
        {
            "hook": "patient-view",
            "id": "epidural-complications",
            "title": "Post-epidural complication check",
            "description": "Flags warning signs after an epidural procedure.",
            "usageRequirements": "Needs Procedure and Observation read access.",
            "prefetch": {
                "patient": "Patient/{{context.patientId}}",
                "procedures": "Procedure?patient={{context.patientId}}&code=http://snomed.info/"
                "sct|18946005&_sort=-date&_count=5",
                "user": "{{context.userId}}",
                "role": "PractitionerRole?_id={{userPractitionerRoleId}}"
                "&_include=PractitionerRole:practitioner",
                "encounter": "Encounter/{{context.encounterId}}",
            },
            "extension": {"org.example.owner": "anaesthesia"},
        }
    ]
}

SVC = ("services", 0)
PF = (*SVC, "prefetch")


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param({"services": []}, id="no-services"),
        pytest.param(SPEC_DISCOVERY, id="spec-example"),
        pytest.param(DISCOVERY, id="own-service"),
        pytest.param(
            change(
                DISCOVERY,
                (*PF, "all-user-tokens"),
                "Practitioner/{{userPractitionerId}}"
                "?x={{userPatientId}},{{userRelatedPersonId}},{{userPractitionerRoleId}}",
            ),
            id="all-user-tokens",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "no-token"), "Organization/hospital-1"), id="no-token"
        ),
        pytest.param(
            change(
                DISCOVERY, (*PF, "single-brace"), "Basic?code={x}&subject={{context.patientId}}"
            ),
            id="single-braces-are-plain-text",
        ),
        pytest.param(change(DISCOVERY, (*SVC, "prefetch"), DELETE), id="no-prefetch"),
        pytest.param(change(DISCOVERY, (*SVC, "title"), DELETE), id="no-title"),
        pytest.param(change(DISCOVERY, (*SVC, "hookVersion"), "1.0"), id="unknown-member"),
    ],
)
def test_discovery_valid(instance: dict[str, Any]) -> None:
    assert_valid("discovery-response", instance)


@pytest.mark.parametrize(
    ("instance", "keyword"),
    [
        pytest.param({}, "required", id="missing-services"),
        pytest.param({"services": None}, "type", id="null-services"),
        pytest.param({"services": [], "note": None}, "not", id="null-unknown-top-level"),
        pytest.param(
            change(
                DISCOVERY,
                (*PF, "temps"),
                "Observation?patient={{context.patientId}}&date=gt{{today() - 90 days}}",
            ),
            "pattern",
            id="prefetch-today-minus",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "appts"), "Appointment?date=gt{{today()}}"),
            "pattern",
            id="prefetch-today",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "med"), "Medication/{{context.medication.id}}"),
            "pattern",
            id="prefetch-nested-context-path",
        ),
        pytest.param(
            change(
                DISCOVERY,
                (*PF, "meds"),
                "Medication?_id={{context.draftOrders.entry.resource.ofType(MedicationRequest)"
                ".medication.resolve().id}}",
            ),
            "pattern",
            id="prefetch-fhirpath",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "p"), "Patient/{{ context.patientId }}"),
            "pattern",
            id="prefetch-token-with-spaces",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "p"), "Patient/{{patientId}}"),
            "pattern",
            id="prefetch-unknown-token",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "p"), "Patient/{{context.patientId"),
            "pattern",
            id="prefetch-unterminated-token",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "p"), "Patient/{{{context.patientId}}}"),
            "pattern",
            id="prefetch-triple-braces",
        ),
        pytest.param(
            change(DISCOVERY, (*PF, "p"), "Observation?code=4548-4 &patient=1"),
            "pattern",
            id="prefetch-whitespace",
        ),
        pytest.param(change(DISCOVERY, (*PF, "p"), ""), "minLength", id="prefetch-value-empty"),
        pytest.param(change(DISCOVERY, (*PF, "p"), None), "type", id="prefetch-value-null"),
        pytest.param(change(DISCOVERY, (*PF,), {}), "minProperties", id="prefetch-empty"),
        pytest.param(change(DISCOVERY, (*PF,), None), "type", id="prefetch-null"),
        pytest.param(
            change(DISCOVERY, (*SVC, "description"), DELETE), "required", id="missing-description"
        ),
        pytest.param(change(DISCOVERY, (*SVC, "hook"), DELETE), "required", id="missing-hook"),
        pytest.param(change(DISCOVERY, (*SVC, "id"), DELETE), "required", id="missing-id"),
        pytest.param(
            change(DISCOVERY, (*SVC, "description"), ""), "minLength", id="description-empty"
        ),
        pytest.param(change(DISCOVERY, (*SVC, "title"), None), "type", id="title-null"),
        pytest.param(change(DISCOVERY, (*SVC, "title"), " "), "pattern", id="title-blank"),
        pytest.param(
            change(DISCOVERY, (*SVC, "usageRequirements"), ""),
            "minLength",
            id="usageRequirements-empty",
        ),
        pytest.param(change(DISCOVERY, (*SVC, "id"), ""), "pattern", id="id-empty"),
        pytest.param(change(DISCOVERY, (*SVC, "id"), "a/b"), "pattern", id="id-with-slash"),
        pytest.param(change(DISCOVERY, (*SVC, "extension"), {}), "minProperties", id="ext-empty"),
        pytest.param(change(DISCOVERY, (*SVC, "hookVersion"), ""), "not", id="unknown-empty"),
    ],
)
def test_discovery_invalid(instance: dict[str, Any], keyword: str) -> None:
    assert_invalid("discovery-response", instance, keyword)


# --------------------------------------------------------------- feedback request

FEEDBACK_ACCEPTED: dict[str, Any] = {
    "feedback": [
        {
            "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
            "outcomeTimestamp": "2021-12-11T10:05:31Z",
        }
    ]
}

FEEDBACK_OVERRIDDEN: dict[str, Any] = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {
                "reason": {
                    "code": "d7ecf885",
                    "system": "https://example.com/cds-hooks/override-reason-system",
                },
                "userComment": "A comment entered by the clinician.",
            },
            "outcomeTimestamp": "2020-12-11T00:00:00Z",
        }
    ]
}

FB0 = ("feedback", 0)


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param(FEEDBACK_ACCEPTED, id="spec-accepted"),
        pytest.param(FEEDBACK_OVERRIDDEN, id="spec-overridden-with-reason"),
        pytest.param(change(FEEDBACK_OVERRIDDEN, (*FB0, "overrideReason"), DELETE), id="no-reason"),
        pytest.param(
            change(FEEDBACK_OVERRIDDEN, (*FB0, "overrideReason", "reason", "system"), DELETE),
            id="reason-code-only",
        ),
        pytest.param(
            change(FEEDBACK_OVERRIDDEN, (*FB0, "overrideReason", "reason", "display"), "Refused"),
            id="reason-with-display",
        ),
        pytest.param(
            change(FEEDBACK_OVERRIDDEN, (*FB0, "overrideReason", "reason"), DELETE),
            id="comment-only",
        ),
        pytest.param(
            {"feedback": FEEDBACK_ACCEPTED["feedback"] + FEEDBACK_OVERRIDDEN["feedback"]},
            id="several-items",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcomeTimestamp"), "2021-12-11T10:05:31.52Z"),
            id="fractional-seconds",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcomeTimestamp"), "2021-12-11T11:05:31+01:00"),
            id="numeric-offset",
        ),
        pytest.param(change(FEEDBACK_ACCEPTED, (*FB0, "card"), "card-1"), id="non-uuid-card"),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "extension"), {"org.example.ui": {"tab": 2}}),
            id="extension",
        ),
        pytest.param(change(FEEDBACK_ACCEPTED, (*FB0, "hookInstance"), "h1"), id="unknown-member"),
    ],
)
def test_feedback_valid(instance: dict[str, Any]) -> None:
    assert_valid("feedback-request", instance)


@pytest.mark.parametrize(
    ("instance", "keyword"),
    [
        pytest.param({}, "required", id="missing-feedback"),
        pytest.param({"feedback": []}, "minItems", id="feedback-empty"),
        pytest.param({"feedback": None}, "type", id="feedback-null"),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "acceptedSuggestions"), DELETE),
            "required",
            id="accepted-without-acceptedSuggestions",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "acceptedSuggestions"), []),
            "minItems",
            id="acceptedSuggestions-empty",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "acceptedSuggestions"), [{}]),
            "required",
            id="acceptedSuggestion-without-id",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcome"), "rejected"), "enum", id="bad-outcome"
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcome"), "ignored"), "enum", id="ignored-outcome"
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcome"), DELETE), "required", id="no-outcome"
        ),
        pytest.param(change(FEEDBACK_ACCEPTED, (*FB0, "card"), DELETE), "required", id="no-card"),
        pytest.param(change(FEEDBACK_ACCEPTED, (*FB0, "card"), ""), "minLength", id="card-empty"),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcomeTimestamp"), DELETE),
            "required",
            id="no-timestamp",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcomeTimestamp"), "2021-12-11"),
            "pattern",
            id="date-only",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcomeTimestamp"), "2021-12-11T10:05:31"),
            "pattern",
            id="no-zone",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcomeTimestamp"), "2021-13-11T10:05:31Z"),
            "pattern",
            id="month-13",
        ),
        pytest.param(
            change(FEEDBACK_ACCEPTED, (*FB0, "outcomeTimestamp"), 1639217131),
            "type",
            id="epoch-number",
        ),
        pytest.param(
            change(FEEDBACK_OVERRIDDEN, (*FB0, "overrideReason", "reason", "code"), DELETE),
            "required",
            id="reason-without-code",
        ),
        pytest.param(
            change(FEEDBACK_OVERRIDDEN, (*FB0, "overrideReason"), "patient refused"),
            "type",
            id="overrideReason-string",
        ),
        pytest.param(
            change(FEEDBACK_OVERRIDDEN, (*FB0, "overrideReason", "userComment"), 5),
            "type",
            id="userComment-number",
        ),
    ],
)
def test_feedback_invalid(instance: dict[str, Any], keyword: str) -> None:
    assert_invalid("feedback-request", instance, keyword)


# ------------------------------------------------------------- cross-cutting rules


def _walk(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def _outside_free_form(path: tuple) -> bool:
    # FHIR resources and extension payloads are not ours to police here.
    return not any(step in ("resource", "extension") for step in path)


EMPTY_ALLOWED = {("cards",), ("services",)}


@pytest.mark.parametrize(
    ("name", "document"), [("hook-response", RESPONSE), ("discovery-response", DISCOVERY)]
)
@pytest.mark.parametrize("empty", [None, "", [], {}])
def test_emitted_documents_reject_every_null_or_empty_member(
    name: str, document: dict[str, Any], empty: Any
) -> None:
    """Blanking any member of our full examples must make them invalid.

    The only exceptions are the top-level cards and services arrays, which may be empty.
    """
    assert_valid(name, document)
    paths = [
        path
        for path, _ in _walk(document)
        if path and _outside_free_form(path[:-1]) and path not in EMPTY_ALLOWED
    ]
    assert len(paths) >= 10  # guard against the walk silently finding nothing
    for path in paths:
        mutated = change(document, path, empty)
        assert not validator(name).is_valid(mutated), f"{name}: {path} = {empty!r} accepted"


def _patterns(node: Any) -> Iterator[str]:
    for path, value in _walk(node):
        if path and path[-1] == "pattern" and isinstance(value, str):
            yield value


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_patterns_do_not_backtrack_catastrophically(name: str) -> None:
    """Long hostile strings must be rejected quickly (an overlapping-quantifier URL
    pattern once took 25 s on a 50 kB string)."""
    hostile = [
        "https://" + "a" * 30_000 + " ",
        "https://" + "a/" * 15_000 + " ",
        "{{context.a}}" * 3_000 + "{{",
        "a{" * 15_000 + "{{",
        "0" * 30_000 + "!",
    ]
    for pattern in _patterns(load_schema(name)):
        started = time.perf_counter()
        for text in hostile:
            re.search(pattern, text)
        assert time.perf_counter() - started < 1.0, pattern


# ------------------------------------------------- the fast check agrees with jsonschema

_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["Bearer", "patient-view", "Practitioner/1", "Patient/x", "https://a.b/"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([REQUEST, ORDER_SELECT_REQUEST]),
    st.data(),
    st.one_of(st.just(DELETE), _ANY_JSON),
)
def test_fast_check_gives_jsonschemas_verdict_on_mutated_requests(
    base: dict[str, Any], data: st.DataObject, value: Any
) -> None:
    paths = [path for path, _ in _walk(base) if path]
    path = data.draw(st.sampled_from(paths))
    mutated = change(base, path, value)
    assert schemas.conforms("hook-request", mutated) == validator("hook-request").is_valid(mutated)
