"""Fixtures that start real servers for integration tests (each test is marked ``integration``).

The sekmet FHIR server is session-scoped: its first start may install a private venv (about
30-40 s, cached under ``$EPIDURAL_CDS_TEST_CACHE``); later starts take about 1.5 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fhir_server import SekmetServer

SEKMET_TOKEN = "integration-test-token"


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[SekmetServer]:
    """A started sekmet FHIR R4 server with an empty store; it ignores Authorization headers."""
    with SekmetServer() as server:
        yield server


@pytest.fixture(scope="session")
def fhir_server_requiring_token() -> Iterator[SekmetServer]:
    """A sekmet server that answers 401 unless ``Authorization: Bearer SEKMET_TOKEN`` is sent."""
    with SekmetServer(bearer_token=SEKMET_TOKEN) as server:
        yield server
