"""The rule-book pages cards link to, and the links themselves, through the Flask app.

A card's last link is its rule's rule-book page: absolute, under EPIDURAL_CDS_PUBLIC_BASE_URL
when set (path prefix kept), else under the request's own base. The page is HTML built from the
content (rationale, every source with its verification note, wording by episode type), public,
with a CSP that allows nothing to load; an unknown rule is a 404 OperationOutcome.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask

from service import content as content_module
from service.fhir.timeshift import shift_times
from tests.protocol.conftest import delta_to_present, make_request
from tests.support.apps import dev_app
from tests.support.hostile_chart import S1


def _s1_cards(app: Flask, base: str = "http://localhost/") -> list[dict[str, Any]]:
    bundle = json.loads((S1 / "bundle.json").read_text())
    bundle = shift_times(bundle, delta_to_present(S1))
    body = json.dumps(make_request(app, S1, bundle=bundle))
    client = app.test_client()
    response = client.post(
        "/cds-services/epidural-complications",
        data=body,
        content_type="application/json",
        base_url=base,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    cards: list[dict[str, Any]] = response.get_json()["cards"]
    return cards


def test_rule_book_page_is_html_with_the_rule_content() -> None:
    app = dev_app()
    content = content_module.load()
    response = app.test_client().get("/rule-book/R-01")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = response.get_data(as_text=True)
    card = content.wording.cards["hematoma_motor"]
    assert card.rationale[0][0] in page
    assert content.sources["ASRA4"].label in page
    assert "checked:" in page, "verification notes live on the rule book"
    assert content.episode_types.labels["labour"] in page
    assert "only for:" in page, "the page says which text applies to which episode type"


def test_r03_page_holds_the_asra_notes_cards_do_not_show() -> None:
    page = dev_app().test_client().get("/rule-book/R-03").get_data(as_text=True)
    assert "not verified" in page


def test_unknown_rule_is_404_operation_outcome() -> None:
    response = dev_app().test_client().get("/rule-book/R-99")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_card_links_use_the_request_base_without_a_public_url() -> None:
    (card,) = _s1_cards(dev_app(), "http://ehr-proxy.test:8443/")
    assert card["links"][-1]["url"] == "http://ehr-proxy.test:8443/rule-book/R-01"
    assert card["links"][0]["url"] == content_module.load().sources["ASRA4"].url


def test_card_links_use_the_public_base_url_with_its_path_prefix() -> None:
    app = dev_app(public_base_url="https://cds.example.org/epidural/")
    (card,) = _s1_cards(app, "http://internal:8080/")
    assert card["links"][-1]["url"] == "https://cds.example.org/epidural/rule-book/R-01"
    assert all(link["type"] == "absolute" for link in card["links"])


def test_one_facility_zone_for_every_time_of_the_response() -> None:
    app = dev_app(facility_timezone="America/Chicago")
    (card,) = _s1_cards(app)
    offsets = set(re.findall(r"\d{2}:\d{2} ([+-]\d{2}:\d{2})", card["detail"]))
    # S1 is recorded in UTC and shown in Chicago time, one offset for the whole card (the record
    # spans two days, moved to the present: a DST switch inside them is the only exception).
    assert offsets and offsets <= {"-06:00", "-05:00"}
    assert "+00:00" not in card["detail"]
