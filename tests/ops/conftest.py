"""Fixtures of the operations tests (issue 14): the signing keys of tests/auth, re-exported."""

from __future__ import annotations

from tests.auth.conftest import ec_signer  # noqa: F401 - fixture re-exported for this package
