"""``epidural-cds report`` in every format from a seeded store, on SQLite and PostgreSQL.

The store is seeded through :class:`CardStore` (as the hook path and the feedback endpoint
write it) with exact times, so every number is known: R-01 has three cards shown and one held
back, one accepted (one suggestion) after 10 min, two overridden after 30 and 50 min (median 30);
R-05 of an older content version has two cards, one overridden after 5 min. One report is about
a card the store never issued. The HTML report is opened in Debian's Chromium: it must render
without any network request, and a screenshot is kept as a test artifact.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import Engine

from service import cli
from service import content as content_module
from service.outcomes import policy as policy_module
from service.outcomes.records import FeedbackReport, IssuedCard
from service.outcomes.store import CardStore
from service.store import migrate
from tests.support.browser import artifact_dir, browser_page, screenshot_is_not_blank

POLICY = policy_module.load(content_module.load(None))
T0 = 1_780_000_000.0  # 2026-05-28
SERVICE = "epidural-complications"


def _card(uuid: str, rule: str, version: str, *, shown: bool = True) -> IssuedCard:
    return IssuedCard(
        card_uuid=uuid, service_id=SERVICE, rule=rule, pattern="p", content_version=version,
        indicator="critical" if rule == "R-01" else "warning", fingerprint=uuid.ljust(64, "0"),
        patient_key="k" * 64, hook_instance="h", issued_at=T0, shown=shown,
        suggestions=((f"{uuid}-s1", "mri_hematoma"),),
    )  # fmt: skip


def _report(card: str, outcome: str, minutes: float, code: str | None = None) -> FeedbackReport:
    return FeedbackReport(
        feedback_id=f"{card}-{outcome}".ljust(64, "0"), card_uuid=card, outcome=outcome,
        reason_code=code, reason_system=None,
        accepted_ids=(f"{card}-s1",) if outcome == "accepted" else (), user_comment=None,
        outcome_at=T0 + minutes * 60,
    )  # fmt: skip


def _seed(engine: Engine) -> None:
    migrate(engine)
    store = CardStore(engine, clock=lambda: T0 + 3600)
    store.record(
        [
            _card("c1", "R-01", "2026.12.0"),
            _card("c2", "R-01", "2026.12.0"),
            _card("c3", "R-01", "2026.12.0"),
            _card("c4", "R-01", "2026.12.0", shown=False),
            _card("d1", "R-05", "2026.11.0"),
            _card("d2", "R-05", "2026.11.0"),
        ]
    )
    store.record_feedback(
        SERVICE,
        [
            _report("c1", "accepted", 10),
            _report("c2", "overridden", 30, "imaging-arranged"),
            _report("c3", "overridden", 50, "record-incorrect"),
            _report("d1", "overridden", 5, "assessed-not-concerning"),
            _report("never-issued", "overridden", 1, "imaging-arranged"),
        ],
        POLICY,
    )


def _run(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> str:
    monkeypatch.setenv(
        "EPIDURAL_CDS_DATABASE_URL", engine.url.render_as_string(hide_password=False)
    )
    assert cli.main(["report", *args]) == 0
    return capsys.readouterr().out


def test_json_and_csv(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(engine)
    document = json.loads(_run(engine, monkeypatch, capsys, "--format", "json"))
    assert document == {
        "since": None,
        "rules": [
            {
                "rule": "R-01", "contentVersion": "2026.12.0", "shown": 3, "suppressed": 1,
                "accepted": 1, "overridden": 2,
                "overriddenByReason": {"imaging-arranged": 1, "record-incorrect": 1},
                "suggestionsAccepted": 1, "medianMinutesToFeedback": 30.0,
            },
            {
                "rule": "R-05", "contentVersion": "2026.11.0", "shown": 2, "suppressed": 0,
                "accepted": 0, "overridden": 1,
                "overriddenByReason": {"assessed-not-concerning": 1},
                "suggestionsAccepted": 0, "medianMinutesToFeedback": 5.0,
            },
        ],
        "unknownFeedback": 1,
    }  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(_run(engine, monkeypatch, capsys, "--format", "csv"))))
    assert [r["rule"] for r in rows] == ["R-01", "R-05"]
    assert rows[0]["overridden:imaging-arranged"] == "1"
    assert rows[1]["overridden:assessed-not-concerning"] == "1"
    assert rows[0]["median_minutes_to_feedback"] == "30.0"


def test_text_and_since(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(engine)
    text = _run(engine, monkeypatch, capsys)
    lines = text.splitlines()
    assert lines[0] == "Card outcomes since all time"
    assert lines[3].split() == ["R-01", "2026.12.0", "3", "1", "1", "2", "1", "30"]
    assert "R-01 2026.12.0 overridden by reason: imaging-arranged 1, record-incorrect 1" in text
    assert "feedback about unknown cards: 1" in text
    later = _run(engine, monkeypatch, capsys, "--since", "2026-06-01")
    assert "(no cards recorded)" in later


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_html_is_self_contained_and_renders_in_chromium(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(engine)
    out = artifact_dir("report") / "report.html"
    _run(engine, monkeypatch, capsys, "--format", "html", "--output", str(out))
    page_text = out.read_text(encoding="utf-8")
    assert "<script" not in page_text and "http://" not in page_text.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert "https://" not in page_text
    with browser_page(1100, 900) as browser:
        browser.page.goto(out.as_uri())
        assert browser.page.locator("svg").count() == 2
        assert browser.page.locator("svg rect").count() >= 8 + 3
        assert "imaging-arranged" in browser.page.inner_text("body")
        shot = artifact_dir("report") / "report.png"
        browser.page.screenshot(path=str(shot), full_page=True)
        assert [u for u in browser.requests if u != out.as_uri()] == []
        assert browser.console_errors == []
    assert screenshot_is_not_blank(shot)


def test_purge_uses_the_retention_setting(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(engine)  # everything is older than a day (T0 is in 2026-05)
    monkeypatch.setenv(
        "EPIDURAL_CDS_DATABASE_URL", engine.url.render_as_string(hide_password=False)
    )
    assert cli.main(["purge", "--older-than", "100000d"]) == 0
    assert "issued_cards 0" in capsys.readouterr().out
    assert cli.main(["purge", "--older-than", "1"]) == 0
    assert "issued_cards 6" in capsys.readouterr().out
    assert "no cards recorded" in _run(engine, monkeypatch, capsys)
