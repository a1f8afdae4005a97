"""The rule book (epidural-cds rule-book): all of the clinical content, readable, in both formats.

A reviewer signs off what the document shows, so it must show everything the service runs on:
every card pattern, every window and threshold, every code (UNVERIFIED ones marked as not used),
the text recognition and the override reasons. Content is escaped in both formats.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from service import content as content_module
from service import rulebook
from service.clinical.terminology import UNVERIFIED

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "cards"
VOID = {"meta", "br", "hr", "img", "link", "input", "col", "area", "base", "wbr"}


class Page(HTMLParser):
    """Collects the text of a page and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.chunks: list[str] = []
        self.rows: list[str] = []
        self._row: list[str] | None = None
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        if tag == "tr":
            self._row = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag == "tr" and self._row is not None:
            self.rows.append(" | ".join(self._row))
            self._row = None
        if tag in {"td", "th"} and self._row is not None:
            self._row.append("")

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)
        if self._row is not None:
            if not self._row:
                self._row.append("")
            self._row[-1] += data

    @property
    def text(self) -> str:
        return " ".join("".join(self.chunks).split())


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert not parser.stack, parser.stack
    return parser


def unescape_markdown(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@pytest.fixture(scope="module")
def book() -> rulebook.RuleBook:
    return rulebook.build()


@pytest.fixture(scope="module")
def markdown(book: rulebook.RuleBook) -> str:
    return unescape_markdown(rulebook.render(book, "markdown"))


@pytest.fixture(scope="module")
def page(book: rulebook.RuleBook) -> Page:
    return parse(rulebook.render(book, "html"))


def test_version_and_every_card_pattern_appear(markdown: str, page: Page) -> None:
    loaded = content_module.load()
    assert f"Content version **{loaded.version}**" in markdown
    assert loaded.version in page.text
    for card in loaded.wording.cards.values():
        for text in (markdown, page.text):
            assert card.summary in text
            assert card.headline in text
            assert f"{card.rule} · {card.id}" in text
            for line in card.detail:
                assert " ".join(line.split()) in text
            for key in card.sources:
                assert loaded.sources[key].label in text
        for key in card.suggestions:
            assert loaded.suggestions[key].label in page.text
    urls = {s.url for s in loaded.sources.values() if s.url}
    assert urls <= set(page.links)


def test_every_value_set_and_code_appears_unverified_marked(markdown: str, page: Page) -> None:
    concepts = content_module.load().lexicon.codes.concepts
    unverified = 0
    for name, codes in concepts.items():
        assert f"`{name}`" in markdown
        assert name in page.text
        for code in codes:
            row = next((r for r in page.rows if f" | {code.code} | " in f" {r} "), None)
            assert row is not None, (name, code.code)
            assert code.display in page.text
            if code.status == UNVERIFIED:
                unverified += 1
                assert "UNVERIFIED — not used for matching" in row
            else:
                assert "not used for matching" not in row
    assert unverified >= 1
    md_rows = [
        line for line in markdown.splitlines() if "UNVERIFIED — not used for matching" in line
    ]
    assert len(md_rows) == unverified


def test_settings_text_and_override_reasons_appear(book: rulebook.RuleBook, page: Page) -> None:
    settings = yaml.safe_load((CARDS / "settings.yaml").read_text())
    labels = yaml.safe_load((CARDS / "rulebook.yaml").read_text())["settings"]
    for key, value in rulebook._flatten(settings):
        row = next(r for r in page.rows if r.startswith(f"{key} | "))
        assert rulebook._value(value) in row
        if key in labels:
            assert " ".join(labels[key].split()) in row
    text = yaml.safe_load((CARDS / "text.yaml").read_text())
    context = yaml.safe_load((CARDS / "context.yaml").read_text())
    for language, spec in context["languages"].items():
        assert f"Language {language}" in page.text
        terms = [
            *(t for lists in spec["classes"].values() for t in (*lists["pre"], *lists["post"])),
            *spec["persisting"],
            *spec["pseudo"],
            *spec["termination"],
            *spec["new_subject"]["terms"],
            *spec["clause_breaks"],
        ]
        for term in terms:
            assert f"“{term}”" in page.text, term
    for name, entry in text["findings"].items():
        assert name in page.text
        for phrase in entry["phrases"]:
            assert f"“{' '.join(phrase)}”" in page.text
    loaded = content_module.load()
    for code, display in loaded.wording.override_reasons:
        assert code in page.text and display in page.text
    unlabelled = [w for w in book.warnings if "has no label" in w]
    assert all(w.startswith("settings.yaml ") for w in unlabelled)


def test_settings_of_2026_12_are_labelled_and_shown(book: rulebook.RuleBook, page: Page) -> None:
    # Issue 12: every new setting is in settings.yaml, labelled and printed in the rule book.
    new = (
        "presumed_catheter_hours",
        "baseline_lookback_days",
        "current_finding_hours.default",
        "current_finding_hours.r05",
        "limb_words.lower_limb",
        "limb_words.upper_limb",
    )
    for key in new:
        row = next(r for r in page.rows if r.startswith(f"{key} | "))
        assert "no label yet" not in row, key
    assert not [w for w in book.warnings if any(k in w for k in new)]
    assert "leg, legs, lower limb" in page.text  # word lists as words, not a Python list


def test_imaging_table_appears(markdown: str) -> None:
    loaded = content_module.load()
    assert "## Imaging region" in markdown
    for pattern, need in loaded.imaging.by_pattern.items():
        assert f"`{pattern}` → **{need}**" in markdown
    for by_need in loaded.imaging.regions.values():
        for keys in by_need.values():
            for key in keys:
                assert loaded.suggestions[key].label in markdown


def test_content_is_escaped(tmp_path: Path) -> None:
    target = tmp_path / "cards"
    shutil.copytree(CARDS, target)
    rules = yaml.safe_load((target / "rules.yaml").read_text())
    hostile = "<script>alert('x')</script> a < b & c > d | e *f* [g](h)"
    rules["warning"][0]["summary"] = hostile
    (target / "rules.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    book = rulebook.build(target)
    page_source = rulebook.render(book, "html")
    assert "<script>" not in page_source
    assert "&lt;script&gt;" in page_source and "a &lt; b &amp; c &gt; d" in page_source
    assert hostile in parse(page_source).text
    markdown = rulebook.render(book, "markdown")
    assert "<script>" not in markdown and r"\<script\>" in markdown
    assert unescape_markdown(hostile) in unescape_markdown(markdown)


def test_unknown_format_is_refused(book: rulebook.RuleBook) -> None:
    with pytest.raises(ValueError):
        rulebook.render(book, "pdf")


def test_rule_book_cli(tmp_path: Path) -> None:
    output = tmp_path / "rule-book.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "rule-book",
            "--format",
            "html",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "written to" in result.stdout
    parse(output.read_text(encoding="utf-8"))
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "rule-book"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# ")
