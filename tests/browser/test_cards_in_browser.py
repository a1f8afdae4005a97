"""Cards as an EHR shows them, in a real Chromium: hostile chart text stays text.

Cards are laid out the way EHRs and the CDS Hooks sandbox render them — a list of cards with an
indicator bar, the summary, ``detail`` rendered from markdown (markdown-it-py, raw HTML allowed
and links linkified, the most permissive choice an EHR makes), the source, links and suggestion
buttons — and loaded into Debian's Chromium (tests/support/browser.py). Cards built from the
hostile S1 chart must produce no element and no request from the data; a control page with the
same text *unescaped* shows that the test would see them. Screenshots of the S1, an ESI and a
warfarin card are written as test artifacts and must not be blank.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from service import content as content_module
from tests.support.browser import artifact_dir, browser_page, screenshot_is_not_blank
from tests.support.hostile_chart import (
    HOST,
    TEXTS,
    evaluate_bundle,
    example,
    hostile_bundle,
    now,
    scenario,
)

MARKDOWN = MarkdownIt("gfm-like", {"html": True})
STYLE = """
body{font-family:system-ui,Segoe UI,Arial,sans-serif;background:#eef1f4;margin:0;padding:16px}
.cards{max-width:760px}
.card{background:#fff;border:1px solid #c9d1d9;border-left:6px solid #999;border-radius:4px;
margin:0 0 12px;padding:10px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card.critical{border-left-color:#c62828}.card.warning{border-left-color:#ef8f00}
.card.info{border-left-color:#1565c0}
.summary{font-weight:600;font-size:15px;margin:0 0 6px}
.badge{display:inline-block;font-size:11px;text-transform:uppercase;padding:1px 6px;
border-radius:3px;color:#fff;background:#999;margin-right:6px}
.critical .badge{background:#c62828}.warning .badge{background:#ef8f00}
.info .badge{background:#1565c0}
.detail{font-size:13px;line-height:1.4;color:#222}.detail p{margin:4px 0}
.detail ul{margin:2px 0 6px;padding-left:20px}
.source{font-size:12px;color:#555;margin-top:6px}
.links a{font-size:12px;margin-right:12px}
.suggestions button{margin:6px 6px 0 0;padding:4px 10px;border:1px solid #1565c0;
background:#e3f2fd;border-radius:3px;font-size:12px;cursor:pointer}
.suggestions button.recommended{background:#1565c0;color:#fff}
"""


def card_html(card: dict[str, Any], detail_html: str | None = None) -> str:
    """One card, laid out like an EHR card (summary and labels are plain text)."""
    esc = html.escape
    source = card["source"]
    label = esc(source["label"])
    if "url" in source:
        label = f'<a href="{esc(source["url"])}">{label}</a>'
    links = "".join(
        f'<a href="{esc(link["url"])}">{esc(link["label"])}</a>' for link in card.get("links", [])
    )
    buttons = "".join(
        f'<button class="{"recommended" if s.get("isRecommended") else ""}">{esc(s["label"])}'
        "</button>"
        for s in card.get("suggestions", [])
    )
    detail = MARKDOWN.render(card["detail"]) if detail_html is None else detail_html
    return (
        f'<section class="card {esc(card["indicator"])}">'
        f'<p class="summary"><span class="badge">{esc(card["indicator"])}</span>'
        f"{esc(card['summary'])}</p>"
        f'<div class="detail">{detail}</div>'
        f'<p class="source">Source: {label}</p>'
        f'<p class="links">{links}</p><div class="suggestions">{buttons}</div></section>'
    )


def page_html(cards: list[str]) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{STYLE}</style></head>'
        f'<body><main class="cards">{"".join(cards)}</main></body></html>'
    )


def data_elements(page: Any) -> dict[str, int]:
    """Elements that only record text could have put in a detail."""
    selector = (
        "img, script, iframe, object, embed, h1, h2, h3, h4, h5, h6, blockquote, table, code, "
        "pre, del, s, b, a"
    )
    found: dict[str, int] = page.evaluate(
        """(sel) => { const out = {};
            for (const d of document.querySelectorAll('.detail'))
              for (const e of d.querySelectorAll(sel)) out[e.tagName] = (out[e.tagName]||0)+1;
            return out; }""",
        selector,
    )
    return found


def hrefs(page: Any) -> list[str]:
    found: list[str] = page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.href)")
    return found


@pytest.fixture(scope="module")
def hostile_cards() -> list[dict[str, Any]]:
    return evaluate_bundle(hostile_bundle(), scenario()["patientId"], now())


def test_hostile_chart_text_makes_no_element_and_no_request(
    hostile_cards: list[dict[str, Any]],
) -> None:
    content = content_module.load()
    allowed = set(content.card_urls) | {"http://localhost/rule-book/R-01"}
    with browser_page(900, 1200) as browser:
        browser.page.set_content(page_html([card_html(c) for c in hostile_cards]))
        browser.page.wait_for_timeout(300)  # let any image or script the data made fire
        assert data_elements(browser.page) == {}
        assert set(hrefs(browser.page)) <= allowed
        assert [u for u in browser.requests if not u.startswith("data:")] == []
        assert browser.console_errors == []
        # The record's words are still there, as text.
        assert "hostile.invalid" in browser.page.inner_text(".detail")
        shot = artifact_dir("cards") / "hostile-s1.png"
        browser.page.screenshot(path=str(shot), full_page=True)
    assert screenshot_is_not_blank(shot)


def test_the_same_text_unescaped_would_be_caught(hostile_cards: list[dict[str, Any]]) -> None:
    # Control: the chart text put into the detail raw, as the service used to, is seen by the
    # checks above (an image element, a request to the data's host).
    raw = " ".join(TEXTS.values())
    control = card_html(hostile_cards[0], MARKDOWN.render(f"- {raw}"))
    with browser_page(900, 800) as browser:
        browser.page.set_content(page_html([control]))
        browser.page.wait_for_timeout(300)
        elements = data_elements(browser.page)
        assert elements.get("IMG") and elements.get("A")
        assert any(u.startswith(HOST) for u in browser.requests), browser.requests


@pytest.mark.parametrize(
    ("name", "shot"),
    [
        ("s1-labour-epidural-lmwh-weakness", "s1-critical.png"),
        ("s9b-tfesi-bilateral-weakness-1h", "esi-critical.png"),
        ("s10-warfarin-inr-at-removal", "warfarin-warning.png"),
    ],
)
def test_screenshots_of_bedside_cards(name: str, shot: str) -> None:
    bundle, patient, at = example(name)
    cards = evaluate_bundle(bundle, patient, at)
    assert cards
    path: Path = artifact_dir("cards") / shot
    with browser_page(820, 900) as browser:
        browser.page.set_content(page_html([card_html(c) for c in cards]))
        assert data_elements(browser.page) == {}
        # Action first: the suggestion buttons are on the first screen, not two screens down.
        box = browser.page.locator(".suggestions button").first.bounding_box()
        if cards[0].get("suggestions"):
            assert box is not None and box["y"] < 900, box
        browser.page.screenshot(path=str(path), full_page=True)
    assert screenshot_is_not_blank(path)
