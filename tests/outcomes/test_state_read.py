"""The suppression state is read only when it could change the call's cards.

A critical card is never held back by default (its window is 0), so with the accepted-suggestion
window off as well, no stored state could change S1's critical card and the hook path must not
pay for the read. Whether a read was attempted is seen through a store that cannot be reached
(its directory moved away: a real SQLite "unable to open" error): an attempted read logs
"suppression state unavailable", a skipped one logs nothing, and the card is the same.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.outcomes.conftest import S1, hook, outcome_app

WARNING = "suppression state unavailable"


def _cards_with_the_store_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, **settings: Any
) -> list[dict[str, Any]]:
    store = tmp_path / "store"
    store.mkdir()
    app = outcome_app(tmp_path, database_url=f"sqlite:///{store}/cds.sqlite3", **settings)
    store.rename(tmp_path / "away")  # the app holds no connection before its first call
    caplog.set_level(logging.WARNING, logger="service.outcomes.tracker")
    return hook(app, S1)


def _read_attempted(caplog: pytest.LogCaptureFixture) -> bool:
    return any(WARNING in record.getMessage() for record in caplog.records)


def test_no_read_when_no_state_could_change_the_cards(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cards = _cards_with_the_store_away(tmp_path, caplog, accepted_suggestion_hours=0)
    assert [c["indicator"] for c in cards] == ["critical"]
    assert cards[0]["suggestions"]
    assert not _read_attempted(caplog)


def test_a_read_when_an_accepted_suggestion_could_be_taken_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cards = _cards_with_the_store_away(tmp_path, caplog)  # default: 72 h
    assert [c["indicator"] for c in cards] == ["critical"]
    assert _read_attempted(caplog)


def test_a_read_when_the_critical_window_is_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _cards_with_the_store_away(
        tmp_path, caplog, accepted_suggestion_hours=0, suppression_critical_window_hours=2
    )
    assert _read_attempted(caplog)
