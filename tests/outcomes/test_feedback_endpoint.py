"""The feedback endpoint: shape, leniency, idempotency, unknown cards, errors and CORS."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from service.outcomes.tables import card_feedback
from tests.outcomes.conftest import (
    FEEDBACK_URL,
    S1,
    accepted,
    hook,
    outcome_app,
    overridden,
    send_feedback,
)
from tests.protocol.conftest import scenario_now, service_state


def _rows(app: Flask) -> list[dict[str, object]]:
    engine = service_state(app).handler.outcomes.store.engine  # type: ignore[union-attr]
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(card_feedback))]


def test_the_same_report_twice_is_stored_once(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    card = hook(app, S1)[0]
    report = overridden(card, "record-incorrect", scenario_now(S1))
    first = send_feedback(app, report)
    again = send_feedback(app, report, report)
    assert first.status_code == 200
    assert first.get_json() == {"received": 1, "stored": 1, "duplicates": 0, "unknownCards": 0}
    assert again.get_json() == {"received": 2, "stored": 0, "duplicates": 2, "unknownCards": 0}
    rows = _rows(app)
    assert len(rows) == 1
    assert rows[0]["known"] is True and rows[0]["reason_code"] == "record-incorrect"
    assert rows[0]["reason_system"] is None  # the sandbox sends a code only


def test_a_reason_with_only_a_code_and_an_override_without_reason_are_accepted(
    tmp_path: Path,
) -> None:
    app = outcome_app(tmp_path)
    card = hook(app, S1)[0]
    now = scenario_now(S1)
    response = send_feedback(app, overridden(card, None, now), overridden(card, "x-local", now))
    assert response.status_code == 200
    assert response.get_json()["stored"] == 2


def test_feedback_for_a_card_we_never_issued_is_kept_and_marked_unknown(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    response = send_feedback(
        app, overridden({"uuid": "not-ours-0001"}, "imaging-arranged", scenario_now(S1))
    )
    assert response.status_code == 200
    assert response.get_json()["unknownCards"] == 1
    assert [r["known"] for r in _rows(app)] == [False]


def test_user_comment_is_dropped_unless_allowed(tmp_path: Path) -> None:
    for allowed, expected in ((False, None), (True, "seen by Dr X")):
        app = outcome_app(tmp_path / str(allowed), store_user_comments=allowed)
        card = hook(app, S1)[0]
        item = overridden(card, "record-incorrect", scenario_now(S1))
        item["overrideReason"]["userComment"] = "seen by Dr X"
        assert send_feedback(app, item).status_code == 200
        assert _rows(app)[0]["user_comment"] == expected


def test_accepted_suggestions_are_counted_with_their_kind(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    card = hook(app, S1)[0]
    response = send_feedback(app, accepted(card, card["suggestions"][0], scenario_now(S1)))
    assert response.status_code == 200
    row = _rows(app)[0]
    assert row["accepted_count"] == 1 and row["accepted_kinds"] == (
        "mri_hematoma+neurosurgery_referral"  # the whole plan that was accepted
    )


def test_malformed_feedback_is_400_with_an_operation_outcome(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    client = app.test_client()
    at = '"outcomeTimestamp": "2026-01-01T00:00:00Z"'
    bad = [
        b"{",
        b"{}",
        b'{"feedback": []}',
        f'{{"feedback": [{{"card": "c", "outcome": "ignored", {at}}}]}}'.encode(),
        f'{{"feedback": [{{"card": "c", "outcome": "accepted", {at}}}]}}'.encode(),
        b'{"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]}',
        (
            f'{{"feedback": [{{"card": "c", "outcome": "overridden", {at}, '
            '"overrideReason": {"reason": {"system": "s"}}}]}'
        ).encode(),
    ]
    for body in bad:
        response = client.post(FEEDBACK_URL, data=body, content_type="application/json")
        assert response.status_code == 400, body
        assert response.mimetype == "application/fhir+json"
        assert response.get_json()["resourceType"] == "OperationOutcome"
    assert _rows(app) == []
    assert client.post(FEEDBACK_URL, data=b"{}", content_type="text/plain").status_code == 415
    assert client.post("/cds-services/nope/feedback", json={"feedback": []}).status_code == 404


def test_cors_preflight_is_answered_on_the_feedback_url(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    headers = {
        "Origin": "https://sandbox.cds-hooks.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = app.test_client().options(FEEDBACK_URL, headers=headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", headers["Origin"])
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


def test_feedback_rows_hold_no_patient_id(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    card = hook(app, S1)[0]
    send_feedback(app, overridden(card, "imaging-arranged", scenario_now(S1)))
    engine = service_state(app).handler.outcomes.store.engine  # type: ignore[union-attr]
    with engine.connect() as connection:
        dump = " ".join(
            str(v)
            for table in ("issued_cards", "card_feedback", "suppression_state")
            for row in connection.exec_driver_sql(f"SELECT * FROM {table}")
            for v in row
        )
        assert connection.execute(select(func.count()).select_from(card_feedback)).scalar() == 1
    assert "s1-patient" not in dump
