"""The response check is a real second line: an unsafe card is a 500, never sent, never ``[]``.

The escape is switched off (monkeypatched to the identity: no real part can make the service
write raw record text, which is the point) so the hostile S1 chart's markup reaches the detail;
the response check must then refuse the card and the call must answer 500 with an
OperationOutcome, not the card and not an empty card list.
"""

from __future__ import annotations

import json

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from service import card_detail
from service.fhir.timeshift import shift_times
from tests.protocol.conftest import delta_to_present, make_request
from tests.support.apps import dev_app
from tests.support.hostile_chart import S1, hostile_bundle, now


def _post(app: Flask) -> TestResponse:
    # Through HTTP the clock is the wall clock: the chart is moved so its "now" is the present.
    bundle = shift_times(hostile_bundle(), delta_to_present(S1))
    body = json.dumps(make_request(app, S1, bundle=bundle))
    return app.test_client().post(
        "/cds-services/epidural-complications", data=body, content_type="application/json"
    )


def test_unescaped_record_text_is_refused_with_500(monkeypatch: pytest.MonkeyPatch) -> None:
    app = dev_app()
    handler = app.extensions["epidural_cds"].handler
    monkeypatch.setattr(card_detail, "markdown_text", lambda value, limit=60: str(value))
    body = json.dumps(make_request(app, S1, bundle=hostile_bundle())).encode()
    with pytest.raises(Exception, match="card 0 refused"):
        handler.handle("epidural-complications", body, now=now(), base_url="http://localhost/")


def test_the_same_chart_escaped_is_answered() -> None:
    app = dev_app()
    handler = app.extensions["epidural_cds"].handler
    body = json.dumps(make_request(app, S1, bundle=hostile_bundle())).encode()
    outcome = handler.handle("epidural-complications", body, now=now(), base_url="http://x/")
    assert [c["indicator"] for c in outcome.response["cards"]] == ["critical"]


def test_refused_card_over_http_is_500_operation_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    app = dev_app()
    assert _post(app).status_code == 200  # control: escaped, the same call is answered
    monkeypatch.setattr(card_detail, "markdown_text", lambda value, limit=60: str(value))
    response = _post(app)
    assert response.status_code == 500
    document = response.get_json()
    assert document["resourceType"] == "OperationOutcome"
    assert "cards" not in document
