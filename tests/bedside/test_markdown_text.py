"""Record text is inert in card markdown: a hostile corpus through the escape, rendered as EHRs do.

Each hostile string is escaped with :func:`markdown_text` and rendered by markdown-it-py in three
ways an EHR might (strict CommonMark with raw HTML allowed, and GFM-like with tables,
strikethrough and a linkifier), at the start of a line, inside a sentence and inside a list item.
The rendered HTML must hold only the paragraph/list elements of the template itself, and its text
must be exactly the characters that were recorded (less invisible ones), so nothing is lost
either.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from service.fhir_ids import valid_id, valid_reference
from service.markdown_text import markdown_text, plain_text

HOSTILE = [
    "![x](http://host/t.png)",
    "<b>bold</b>",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "<!-- comment -->",
    "[link](javascript:alert(1))",
    "[link](<javascript:alert(1)>)",
    "<http://evil>",
    "<mailto:a@evil.example>",
    "[a]: http://evil",
    "[a]",
    "[text][a]",
    "http://evil.example/x",
    "www.evil.example",
    "visit evil.com now",
    "someone@evil.example",
    "id`with`backticks",
    "``code``",
    "* starred",
    "_under_",
    "**strong**",
    "# heading",
    "###### six",
    "> quoted",
    "| a | b |",
    "a | b\n---|---\nc | d",
    "- dash item",
    "+ plus item",
    "1. numbered",
    "1) numbered",
    "===",
    "---",
    "~~struck~~",
    "    indented code",
    "\tTabbed",
    "line one\nline two",
    "line\r\n# heading after CRLF",
    "line\u2028<b>after line separator</b>",
    "next\u0085> quote after NEL",
    "&lt;b&gt;entity",
    "&#60;img src=x&#62;",
    "back\\slash \\<b>",
    "\u202egnp.exe",  # right-to-left override
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "\uff1cb\uff1e fullwidth brackets",
    "\u2024\u2024 one-dot leaders",
    "<sc<script>ript>",
    "[![img](http://x/y.png)](http://evil)",
    "<a href='http://evil'>click</a>",
    "javascript:alert(1)",
    "x" * 500,
]

ALLOWED_TAGS = {"p", "ul", "li"}


class Elements(HTMLParser):
    """Collects element names and the decoded text of rendered HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_comment(self, data: str) -> None:
        self.tags.append("!--")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


RENDERERS = {
    "commonmark+html": MarkdownIt("commonmark", {"html": True}),
    "gfm-like": MarkdownIt("gfm-like", {"html": True}),
}
TEMPLATES = {
    "line start": "{}",
    "in a sentence": "Recorded as “{}” at 10:00.",
    "list item": "- **Leg weakness**, “{}” — 2026-03-10 18:00 +00:00",
}


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def visible(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize("where", TEMPLATES)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_record_text_renders_as_itself_and_nothing_else(
    hostile: str, where: str, renderer: str
) -> None:
    template = TEMPLATES[where]
    markdown = template.format(markdown_text(hostile))
    html = RENDERERS[renderer].render(markdown)
    found = parse(html)
    expected_tags = {"p"} | ({"ul", "li", "strong"} if where == "list item" else set())
    assert set(found.tags) <= expected_tags, (html, found.tags)
    assert set(found.tags) <= ALLOWED_TAGS | {"strong"}
    shown = visible("".join(found.text))
    blank = parse(RENDERERS[renderer].render(template.format("QQQ")))
    expected = visible("".join(blank.text)).replace("QQQ", visible(plain_text(hostile)))
    assert shown == expected, (markdown, html)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_escaped_text_is_one_line_without_raw_markup(hostile: str) -> None:
    escaped = markdown_text(hostile)
    assert "\n" not in escaped and "\r" not in escaped
    assert "<" not in escaped and ">" not in escaped
    for mark in "*_`[]()!|~":
        assert mark not in escaped.replace("\\" + mark, ""), mark
    assert re.search(r"(?<!\\)://", escaped) is None, "a scheme separator must be escaped"
    assert "@" not in escaped.replace("\\@", "")


def test_invisible_and_direction_characters_are_dropped() -> None:
    assert plain_text("\u202egnp.exe") == "gnp.exe"
    assert plain_text("a\u200bb\u200dc\ufeffd\x00e\x1bf") == "abcdef"
    assert plain_text("two\n\nlines\u2028here") == "two lines here"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert plain_text("x" * 100, 10) == "x" * 9 + "…"
    assert len(markdown_text("y" * 500)) <= 60


def test_ordinary_clinical_text_stays_readable() -> None:
    text = "Left L5-S1 TFESI, dexamethasone 10 mg/mL; 0.5 % bupivacaine (L3.4)"
    assert markdown_text(text, 200) == (
        "Left L5-S1 TFESI, dexamethasone 10 mg/mL; 0.5 % bupivacaine \\(L3.4\\)"
    )


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("40.6 Cel", "40.6 Cel"),  # a value: digits and a dot are no list marker
        ("1. weak legs", "1\\. weak legs"),  # an ordered-list marker at the start is escaped
        ("2) numb", "2\\) numb"),
        ("12.", "12\\."),
    ],
)
def test_only_a_real_ordered_list_marker_is_escaped(value: str, escaped: str) -> None:
    assert markdown_text(value) == escaped
    rendered = MarkdownIt("commonmark").render(markdown_text(value))
    assert "<ol" not in rendered


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("s1-cond-leg-weakness", True),
        ("A.b-9", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("id`with`backtick", False),
        ("a/b", False),
        ("a b", False),
        ("ünïcode", False),
        ("<b>", False),
        (None, False),
        (42, False),
    ],
)
def test_fhir_id_grammar(value: object, ok: bool) -> None:
    assert valid_id(value) is ok


def test_fhir_reference_grammar() -> None:
    assert valid_reference("Condition/abc-1")
    assert not valid_reference("Condition/abc`x")
    assert not valid_reference("Condition/a/b")
    assert not valid_reference("condition/abc")
    assert not valid_reference("Condition/")
    assert not valid_reference("<b>/x")


def test_escaped_text_is_remembered_per_limit_and_emptied_with_every_memo() -> None:
    """The memo (a hot-path saving) must give what a fresh escape gives, per length limit."""
    from service.clinical.memo import forget_all
    from service.markdown_text import _REMEMBERED, _escaped

    text = "Enoxaparin *40 mg* [evil.com](x)"
    assert markdown_text(text, 20) == _escaped(text, 20)
    assert markdown_text(text, 60) == _escaped(text, 60) != markdown_text(text, 20)
    assert markdown_text(text, 60) == _escaped(text, 60)  # the remembered reading
    remembered = _REMEMBERED[60]
    assert remembered.cache_info().hits >= 1  # type: ignore[attr-defined]
    forget_all()
    assert remembered.cache_info().currsize == 0  # type: ignore[attr-defined]
    long_text = "x" * 300
    assert markdown_text(long_text, 400) == _escaped(long_text, 400)
    assert _REMEMBERED[400].cache_info().currsize == 0  # type: ignore[attr-defined]
