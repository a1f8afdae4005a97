"""The HTTP baseline: a bare Flask app under exactly the service's gunicorn settings.

It answers ``POST /cds-services/<id>`` by parsing the body with ``json.loads`` and returning a
fixed small JSON document, with no authentication, no validation and no evaluation. It is served
through ``service.http.server.serve`` (the function ``epidural-cds serve`` uses), so worker class,
worker count, preload, timeouts and access logging are identical and the ratio
service/baseline isolates the service's own per-request cost.

    python -m bench.baseline_app --port 8099 --workers 2
"""

from __future__ import annotations

import argparse
import json

from flask import Flask, Response, request

BODY = b'{"cards":[]}'


def create_app() -> Flask:
    app = Flask("bench_baseline")
    app.config["MAX_CONTENT_LENGTH"] = 5_000_001

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str) -> Response:
        json.loads(request.get_data(cache=False))
        return Response(BODY, mimetype="application/json")

    @app.get("/healthz")
    def health() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    return app


def main() -> None:
    from service.http.server import DEFAULT_CONFIG, serve

    parser = argparse.ArgumentParser(prog="python -m bench.baseline_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gunicorn-config", default=DEFAULT_CONFIG)
    args = parser.parse_args()
    serve(create_app(), args.host, args.port, args.workers, args.threads, args.gunicorn_config)


if __name__ == "__main__":
    main()
