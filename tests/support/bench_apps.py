"""Calling the benchmark's app variants (``bench.ceiling_app``, ``bench.layers``) in tests.

They are the production app with pieces taken out, so they are called as the benchmark's load
generator calls them: the public base URL the tokens' ``aud`` names, and an optional bearer.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from bench import charts, tokens

PATH = f"/cds-services/{charts.SERVICE_ID}"


def post_hook(app: Flask, body: bytes, token: str | None = None) -> tuple[int, Any]:
    """``(status, JSON body)`` of one hook call to ``app``."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = app.test_client().post(
        PATH, data=body, headers=headers, base_url=tokens.PUBLIC_BASE_URL
    )
    return response.status_code, response.get_json(force=True)
