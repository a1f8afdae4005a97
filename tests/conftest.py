"""Fixtures shared by every test package.

``postgres``: one throwaway PostgreSQL server for the whole session, started only when a test
asks for it (creating the cluster takes about a second; a database on it a few tens of
milliseconds). The store tests and the replay tests on PostgreSQL all use it. A missing server
is an error, not a skip: ``make test`` installs it (scripts/ensure-test-deps), and a silently
skipped PostgreSQL test would hide exactly the deployments it exists for. Its setup times are
printed in the terminal summary so a slow CI machine can be diagnosed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer

_started: list[PostgresServer] = []


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL server, deleted at the end of the session."""
    with PostgresServer() as server:
        _started.append(server)
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long the PostgreSQL harness took to create and start its cluster."""
    for server in _started:
        terminalreporter.write_line(
            f"postgres harness: initdb {server.initdb_s:.2f} s, "
            f"start + create database {server.startup_s:.2f} s"
        )
