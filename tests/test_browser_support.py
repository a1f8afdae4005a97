"""The browser harness itself works: Debian's Chromium starts, renders, records and screenshots.

Every browser test (cards, report, workbench) stands on tests/support/browser.py; this test says
first, and plainly, when the harness rather than a page is what broke.
"""

from __future__ import annotations

from tests.support.browser import artifact_dir, browser_page, screenshot_is_not_blank


def test_chromium_renders_a_page_and_records_its_requests() -> None:
    html = "<!doctype html><title>t</title><h1 style='color:#b00'>rendered</h1>"
    with browser_page(800, 600) as browser:
        browser.page.set_content(html)
        assert browser.page.inner_text("h1") == "rendered"
        shot = artifact_dir("harness") / "harness.png"
        browser.page.screenshot(path=str(shot))
        # set_content loads no URL: the page made no request of its own.
        assert [url for url in browser.requests if not url.startswith("data:")] == []
    assert screenshot_is_not_blank(shot)


def test_a_blank_page_is_reported_blank() -> None:
    with browser_page(400, 300) as browser:
        browser.page.set_content("<!doctype html><body style='background:#fff'></body>")
        shot = artifact_dir("harness") / "blank.png"
        browser.page.screenshot(path=str(shot))
    assert not screenshot_is_not_blank(shot)
