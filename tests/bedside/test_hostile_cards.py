"""Cards built from hostile chart text: nothing from the record becomes markup or a link.

The S1 chart with markup in every text field (tests/support/hostile_chart.py) is evaluated by the
real handler; the card must be S1's critical card, its detail must render (markdown-it-py, raw
HTML allowed, GFM-like with a linkifier) to the template's own elements only, no URL from the
data may appear as a link target, and the Condition whose id breaks the FHIR id grammar must not
be echoed anywhere in the response. The response check itself is shown to refuse unsafe cards.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from markdown_it import MarkdownIt

from service import content as content_module
from service.card_check import UnsafeCard, card_problems, check_cards, detail_problems
from tests.support.hostile_chart import BAD_ID, HOST, evaluate_bundle, hostile_bundle, now, scenario

RENDERERS = [MarkdownIt("commonmark", {"html": True}), MarkdownIt("gfm-like", {"html": True})]
TEMPLATE_TAGS = {"p", "ul", "li", "strong", "em"}


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("href", "src")]


@pytest.fixture(scope="module")
def cards() -> list[dict[str, Any]]:
    return evaluate_bundle(hostile_bundle(), scenario()["patientId"], now())


def test_the_hostile_chart_still_gets_its_critical_card(cards: list[dict[str, Any]]) -> None:
    expected = scenario()["expected"]["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        (e["indicator"], e["summary"]) for e in expected
    ]


@pytest.mark.parametrize("renderer", RENDERERS, ids=["commonmark+html", "gfm-like"])
def test_detail_renders_to_template_elements_only(
    cards: list[dict[str, Any]], renderer: MarkdownIt
) -> None:
    for card in cards:
        found = Collect()
        found.feed(renderer.render(card["detail"]))
        assert set(found.tags) <= TEMPLATE_TAGS, found.tags
        assert found.urls == []
        assert "hostile.invalid" in card["detail"].replace("\\", ""), "the text is still shown"


def test_the_bad_id_is_never_echoed(cards: list[dict[str, Any]]) -> None:
    assert BAD_ID not in json.dumps(cards)
    assert "`evil`" not in json.dumps(cards)


def test_the_response_check_passes_and_would_refuse_data_links(
    cards: list[dict[str, Any]],
) -> None:
    content = content_module.load()
    prefix = ("http://localhost/rule-book/",)
    for card in cards:
        assert card_problems(card, content.card_urls, prefix) == []
        tampered = {**card, "detail": card["detail"] + f"\n[x]({HOST}/y)"}
        assert card_problems(tampered, content.card_urls, prefix)
        with pytest.raises(UnsafeCard):
            check_cards([tampered], content.card_urls, prefix)


@pytest.mark.parametrize(
    "detail",
    [
        "<b>x</b>",
        "a <img src=x>",
        "<!-- c -->",
        "<http://evil>",
        f"[x]({HOST})",
        f"![x]({HOST}/t.png)",
        f"[a]: {HOST}",
        "[a][b]",
        f"see {HOST}/x",
        "www.evil.example",
        # Every case of "www." and of the scheme: the check looks for "w."/"W." and "://"
        # before it runs the bare-URL pattern, so a pre-check that missed a case would pass.
        "WWW.evil.example",
        "wWw.evil.example",
        "HTTPS://evil.example",
        "[a]:\thttps://evil.example",
        "text ] then [a][b]",
    ],
)
def test_detail_problems_are_found(detail: str) -> None:
    assert detail_problems(detail, frozenset({"https://ok.example/"})) != []


@pytest.mark.parametrize(
    "detail",
    [
        "[guideline](https://ok.example/)",
        "under <1 h, INR below 1.5",
        "escaped \\[a\\]\\(http\\://evil\\) \\!\\[x\\]",
        "&lt;b&gt; is shown as text",
    ],
)
def test_safe_details_pass(detail: str) -> None:
    assert detail_problems(detail, frozenset({"https://ok.example/"})) == []
