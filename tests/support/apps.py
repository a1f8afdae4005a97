"""Apps for tests that are not about authentication: development profile, auth off.

Each app gets its own temporary data directory, so the embedded SQLite store of one test never
leaks into another (or into the working tree).
"""

from __future__ import annotations

import tempfile
from typing import Any

from flask import Flask

from service.http.app import create_app


def dev_app(**settings: Any) -> Flask:
    """``create_app`` in the development profile with authentication off, plus ``settings``."""
    data_dir = tempfile.mkdtemp(prefix="epidural-cds-test-")
    return create_app(
        {"profile": "development", "auth_disabled": True, "data_dir": data_dir, **settings}
    )
