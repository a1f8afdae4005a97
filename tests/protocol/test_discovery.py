"""GET /cds-services: the discovery document (CDS Hooks 2.0 §Discovery, §Prefetch Template).

What we advertise is what EHRs will prefetch for every chart opened, so the templates must be
valid 2.0 templates (no 3.0 ``{{today()}}``, only context tokens), filtered enough not to pull a
patient's whole history, and exactly the templates the hook handler resolves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.cdshooks import schemas
from service.fhir.local_search import build_prefetch
from tests.protocol.conftest import (
    EXAMPLE_DIRS,
    JSON,
    encode,
    find_empty,
    service_state,
)

TOKEN = re.compile(r"\{\{(.*?)\}\}")
MEDICATION_TYPES = (
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationStatement",
    "MedicationDispense",
)


@pytest.fixture
def discovery(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.mimetype == JSON
    document: dict[str, Any] = json.loads(response.get_data(as_text=True))
    return document


def templates(discovery: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(service id, key, template)`` for every advertised prefetch template."""
    return [
        (service["id"], key, template)
        for service in discovery["services"]
        for key, template in service.get("prefetch", {}).items()
    ]


def query_params(template: str) -> list[tuple[str, str]]:
    _, _, query = template.partition("?")
    return parse_qsl(query, keep_blank_values=True)


def resource_type(template: str) -> str:
    return template.partition("?")[0].split("/")[0]


def test_discovery_is_200_and_valid_against_the_schema(discovery: dict[str, Any]) -> None:
    assert schemas.errors(schemas.DISCOVERY_RESPONSE, discovery) == []
    assert discovery["services"], "the service advertises no CDS service"


def test_discovery_has_no_empty_values(discovery: dict[str, Any]) -> None:
    assert find_empty(discovery) == []


def test_every_service_is_fully_described(discovery: dict[str, Any]) -> None:
    for service in discovery["services"]:
        assert service["hook"] in ("patient-view", "order-select", "order-sign")
        for field in ("id", "title", "description", "usageRequirements"):
            assert isinstance(service.get(field), str) and service[field].strip(), field
        assert re.fullmatch(r"[A-Za-z0-9\-._~]+", service["id"]), "id must be a URL path segment"
    # One id may serve several hooks (CDS Hooks 2.0 §Discovery, §Update stale guidance), once each.
    entries = [(service["id"], service["hook"]) for service in discovery["services"]]
    assert len(entries) == len(set(entries))
    assert {"order-select", "order-sign"} <= {hook for _, hook in entries}


def test_prefetch_is_advertised(discovery: dict[str, Any]) -> None:
    assert templates(discovery), "no prefetch templates: every call would need fhirServer"


def test_prefetch_templates_use_only_context_patient_id_tokens(discovery: dict[str, Any]) -> None:
    for _, key, template in templates(discovery):
        assert "{{today(" not in template.replace(" ", ""), key
        tokens = TOKEN.findall(template)
        assert tokens, f"{key}: a template without a patient token would query every patient"
        assert all(token == "context.patientId" for token in tokens), (key, tokens)
        rest = TOKEN.sub("", template)
        assert "{{" not in rest and "}}" not in rest, f"{key}: unterminated token"
        assert "${" not in template, f"{key}: content placeholder left in the template"


def test_prefetch_templates_are_relative_fhir_reads_or_searches(discovery: dict[str, Any]) -> None:
    for _, key, template in templates(discovery):
        assert not template.startswith(("/", "http:", "https:")), key
        assert re.fullmatch(r"[A-Z][A-Za-z]+", resource_type(template)), key
        for name, value in query_params(template):
            assert value, f"{key}: parameter {name} has no value"
            # 2.0 §Prefetch query restrictions: token equality, optionally :in, no other modifier.
            assert ":" not in name or name.endswith(":in"), f"{key}: modifier in {name}"
            assert name != "sort:desc", f"{key}: invalid FHIR sort syntax"
    # Every template can be rendered and answered by a FHIR search (the local one here).
    queries = {
        key: template.replace("{{context.patientId}}", "p1")
        for _, key, template in templates(discovery)
    }
    build_prefetch([], queries)


def test_observation_templates_are_filtered(discovery: dict[str, Any]) -> None:
    observation = [t for t in templates(discovery) if resource_type(t[2]) == "Observation"]
    assert observation, "no Observation template advertised"
    for _, key, template in observation:
        names = {name for name, value in query_params(template) if value}
        assert names & {"code", "category"}, f"{key}: unfiltered Observation query {template!r}"


def test_procedure_and_medication_templates_are_filtered(discovery: dict[str, Any]) -> None:
    checked = [
        t
        for t in templates(discovery)
        if resource_type(t[2]) == "Procedure" or resource_type(t[2]) in MEDICATION_TYPES
    ]
    assert any(resource_type(t[2]) == "Procedure" for t in checked), "no Procedure template"
    assert any(resource_type(t[2]) in MEDICATION_TYPES for t in checked), "no medication template"
    for _, key, template in checked:
        names = {name for name, value in query_params(template) if value}
        assert names & {"status", "code"}, f"{key}: unfiltered query {template!r}"


def test_discovery_is_built_from_the_definitions_the_handler_runs(
    app: Flask, discovery: dict[str, Any]
) -> None:
    state = service_state(app)
    advertised = {(service["id"], service["hook"]): service for service in discovery["services"]}
    assert set(advertised) == {(service.id, service.hook) for service in state.content.services}
    for definition in state.content.services:
        entry = advertised[definition.id, definition.hook]
        assert entry["hook"] == definition.hook
        # The development profile says so in every description (these tests run in it).
        notice = state.trust.notice
        assert notice and "DEVELOPMENT MODE" in notice
        assert entry["description"] == f"{definition.description} {notice}"
        expected = {spec.key: spec.query for spec in definition.prefetch}
        assert entry.get("prefetch", {}) == expected
        handled = {t.key: t.template for t in state.handler.templates[definition.id]}
        assert handled == expected, "the handler resolves other templates than discovery shows"


def test_every_advertised_service_answers_its_hook(
    client: FlaskClient, discovery: dict[str, Any], build_request: Callable[..., dict[str, Any]]
) -> None:
    example = EXAMPLE_DIRS[0]
    for service in discovery["services"]:
        body = build_request(example)
        body["hook"] = service["hook"]
        if service["hook"] != "patient-view":
            body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": []}
            if service["hook"] == "order-select":
                body["context"]["selections"] = ["MedicationRequest/none"]
                body["context"]["draftOrders"]["entry"] = [
                    {"resource": {"resourceType": "MedicationRequest", "id": "none"}}
                ]
        response = client.post(
            f"/cds-services/{service['id']}", data=encode(body), content_type=JSON
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "cards" in response.get_json()
