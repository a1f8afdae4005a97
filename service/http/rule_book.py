"""``GET /rule-book/{rule}``: the rule-book page a card links to, as HTML.

Public like ``/healthz`` (the pages hold clinical content, no patient data), built once at
startup, and served with a Content-Security-Policy that allows no script, no frame and no
fetch: the page is text and tables only.
"""

from __future__ import annotations

from flask import Flask, Response

from service.content import Content
from service.errors import NotFound
from service.rule_book_pages import build_pages

_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def register_rule_book(app: Flask, content: Content) -> None:
    """Add the rule-book routes to ``app`` (pages built now, from ``content``)."""
    pages = build_pages(content)
    index = "".join(f'<li><a href="rule-book/{rule}">{rule}</a></li>' for rule in pages)
    index_page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Rule book</title>'
        f"</head><body><h1>Rule book ({content.version})</h1><ul>{index}</ul></body></html>"
    )

    def page(body: str) -> Response:
        response = Response(body, mimetype="text/html")
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @app.get("/rule-book")
    def rule_book_index() -> Response:
        return page(index_page)

    @app.get("/rule-book/<rule>")
    def rule_book_page(rule: str) -> Response:
        body = pages.get(rule)
        if body is None:
            raise NotFound("no rule-book page with that rule id")
        return page(body)
