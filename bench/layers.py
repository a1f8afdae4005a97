"""Where a worker's CPU goes in one authenticated hook call, layer by layer.

The HTTP phase measures the whole service, a bare baseline and the ceiling (the service without
its evaluation). This tool splits the ceiling further, without sockets: each variant of the app
is driven in this process through its WSGI callable with prebuilt environs (as gunicorn hands
requests over) for the 100-resource chart, in alternating rounds, and the CPU time per request
is reported. Each variant adds one layer to the one before, so adjacent differences are the
layers' costs:

1. ``baseline``: :mod:`bench.baseline_app` (``json.loads`` and a fixed answer);
2. ``decode``: the service app with authentication off and a handler that only decodes the body;
3. ``checks``: the service app with authentication off, the ceiling's handler (decode, depth
   pre-scan, request schema; :class:`bench.ceiling_app.ParseOnlyHandler`);
4. ``jwt``: plus JWT verification, with the replay guard held in this process's memory;
5. ``ceiling``: plus the replay guard on SQLite, as deployed (= :mod:`bench.ceiling_app`);
6. ``service``: the real service, evaluation included.

Gunicorn's own per-request work (socket, HTTP parsing, access log) is not included; compare
with the HTTP phase for that.

    .venv/bin/python -m bench.layers [--requests 600] [--rounds 5] [--jwt-alg ES384|RS384]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from flask import Flask
from werkzeug.test import EnvironBuilder

from bench import charts, tokens
from bench.ceiling_app import ParseOnlyHandler

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
LAYERS = ("baseline", "decode", "checks", "jwt", "ceiling", "service")


class _DecodeOnlyHandler(ParseOnlyHandler):
    """Decodes the body and answers no cards: no depth pre-scan, no schema."""

    def read_request(self, service_id: str, body: bytes) -> dict[str, Any]:
        """The body decoded, unchecked."""
        decoded: dict[str, Any] = orjson.loads(body)
        return decoded


class _SetReplayGuard:
    """A replay guard in a set: the cheapest correct one, to isolate the database's cost."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        key = (iss, jti)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


@contextlib.contextmanager
def _production_env(directory: Path, client: tokens.Client) -> Iterator[None]:
    """The environment of the HTTP phase's service, restored afterwards."""
    wanted = {
        "EPIDURAL_CDS_PROFILE": "production",
        "EPIDURAL_CDS_ISSUERS_FILE": str(client.issuers_file),
        "EPIDURAL_CDS_PUBLIC_BASE_URL": tokens.PUBLIC_BASE_URL,
        "EPIDURAL_CDS_DATA_DIR": str(directory / "data"),
    }
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _variant(name: str) -> Flask:
    """The app of one layer (the environment must already be set for the production profile)."""
    from bench.baseline_app import create_app as baseline_app
    from bench.ceiling_app import create_ceiling_app
    from service.http.app import EXTENSION_KEY, ServiceState, create_app
    from service.security.trust import ClientTrust, build_trust

    if name == "baseline":
        return baseline_app()
    if name == "service":
        return create_app()
    app = create_ceiling_app()
    state: ServiceState = app.extensions[EXTENSION_KEY]
    if name in ("decode", "checks"):
        handler = state.handler
        if name == "decode":
            handler = _DecodeOnlyHandler(state.content, state.settings)
        off = ClientTrust(None, state.settings.public_base_url, True)
        app.extensions[EXTENSION_KEY] = dataclasses.replace(state, trust=off, handler=handler)
    elif name == "jwt":
        trust = build_trust(state.settings, _SetReplayGuard())
        app.extensions[EXTENSION_KEY] = dataclasses.replace(state, trust=trust)
    elif name != "ceiling":
        raise ValueError(f"unknown layer {name!r}: choose from {LAYERS}")
    return app


def _environs(body: bytes, bearer: Iterator[str], count: int) -> list[dict[str, Any]]:
    path = f"/cds-services/{charts.SERVICE_ID}"
    return [
        EnvironBuilder(
            path=path,
            method="POST",
            data=body,
            content_type="application/json",
            headers=[("Authorization", f"Bearer {next(bearer)}")],
            base_url=tokens.PUBLIC_BASE_URL,
        ).get_environ()
        for _ in range(count)
    ]


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise RuntimeError(f"a layer answered {status}")


def _cpu_ms_per_request(app: WsgiApp, environs: list[dict[str, Any]]) -> float:
    start = time.process_time()
    for environ in environs:
        for _chunk in app(environ, _start_response):
            pass
    return (time.process_time() - start) * 1000 / len(environs)


def measure(requests: int = 600, rounds: int = 5, jwt_alg: str = tokens.ALG) -> dict[str, Any]:
    """CPU ms per request of every layer: min and median over ``rounds`` alternating rounds."""
    directory = Path(tempfile.mkdtemp(prefix="epidural-cds-layers-"))
    client = tokens.create_client(directory, jwt_alg)
    with _production_env(directory, client):
        apps = {name: _variant(name) for name in LAYERS}
    gc.freeze()  # as service.http.server.serve does before forking its workers
    # Built at the wall clock, which the HTTP route evaluates at: a chart of the fixed ANCHOR
    # would be months old, its red flags no longer current (clinical-spec §3.5), and no card
    # would be rendered, so the "service" layer would measure less work than a real call.
    body = charts.body(charts.BENCH_SIZE, now=datetime.now(UTC))
    warmup = 30
    bearer = iter(tokens.mint(client, (requests + warmup) * len(LAYERS) * rounds))
    samples: dict[str, list[float]] = {name: [] for name in LAYERS}
    for app in apps.values():
        _cpu_ms_per_request(app, _environs(body, bearer, warmup))
    for _ in range(rounds):
        for name, app in apps.items():
            samples[name].append(_cpu_ms_per_request(app, _environs(body, bearer, requests)))
    return {
        "jwt_alg": jwt_alg,
        "requests_per_round": requests,
        "rounds": rounds,
        "cpu_ms_per_request": {
            name: {
                "min": round(min(values), 3),
                "median": round(statistics.median(values), 3),
            }
            for name, values in samples.items()
        },
    }


def render(result: dict[str, Any]) -> str:
    """A table of the layers, with each layer's cost over the one before (by the minimum)."""
    rows = result["cpu_ms_per_request"]
    lines = [
        f"CPU ms per request, {result['rounds']} rounds of {result['requests_per_round']} "
        f"requests, JWT {result['jwt_alg']}:",
        f"{'layer':10s} {'min':>7s} {'median':>7s} {'+layer':>7s}",
    ]
    previous = None
    for name in LAYERS:
        added = "" if previous is None else f"{rows[name]['min'] - rows[previous]['min']:+7.3f}"
        lines.append(f"{name:10s} {rows[name]['min']:7.3f} {rows[name]['median']:7.3f} {added}")
        previous = name
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__)
    parser.add_argument("--requests", type=int, default=600, help="requests per layer and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jwt-alg", choices=tokens.ALGORITHMS, default=tokens.ALG)
    args = parser.parse_args()
    print(render(measure(args.requests, args.rounds, args.jwt_alg)))


if __name__ == "__main__":
    main()
