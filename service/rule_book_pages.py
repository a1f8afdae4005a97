"""One rule-book page per rule, the page a card links to (``GET {base}/rule-book/{rule}``).

Cards stay short at the bedside: what was found, when, what to do now, a few lines of evidence.
Everything a clinician or reviewer may want next — why the pattern matters, every source with how
far it was verified, which wording applies to which episode type, the suggested orders with their
codes, the ASRA notes — is on the rule's page. The pages hold no patient data: they are built
once from the validated content at startup (the same blocks as ``epidural-cds rule-book``), so
serving one is a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from service import content as content_module
from service import rulebook
from service.clinical.terminology import Code
from service.content import PATTERNS, Content
from service.rulebook import Block, Bullets, Heading, Mono, Paragraph, RuleBook, Strong, Text

INDICATORS = ("critical", "warning", "info")


def _indicator(pattern: str) -> str:
    return next(kind for kind in INDICATORS if pattern in PATTERNS[kind])


def _asra_notes(directory: Path) -> list[Block]:
    asra = rulebook._raw(directory, "asra")
    items: list[Text] = []
    for key, entry in asra["drugs"].items():
        for dose in ("low", "high"):
            note = entry.get(dose, {}).get("note")
            if note:
                items.append((Mono(key), f" ({dose} dose): {note}"))
    return [
        Heading(2, "ASRA notes (as encoded; verification remarks included)"),
        Bullets(tuple(items)),
    ]


def build_pages(content: Content) -> Mapping[str, str]:
    """``rule id -> HTML page`` for every rule that has a card pattern."""
    directory = content.directory
    labels = rulebook._labels(directory)
    sources_doc = rulebook._raw(directory, "sources")["sources"]
    short_names = {uri: name for name, uri in content_module.code_systems(directory).items()}

    def code_text(code: Code) -> Text:
        system = short_names.get(code.system, code.system)
        return (Mono(code.code), f" {code.display} ({system}, {code.status})")

    rules: dict[str, list[str]] = {}
    for pattern, card in content.wording.cards.items():
        rules.setdefault(card.rule, []).append(pattern)
    pages = {}
    for rule, patterns in sorted(rules.items()):
        blocks: list[Block] = [
            Heading(1, f"{labels['title']}: {rule}"),
            Paragraph(("Content version ", Strong(content.version), ".")),
            Paragraph(
                (
                    "A card shows what was found and when, what to do now, and a few lines of "
                    "evidence. This page holds the rest: the rationale, every source (with how far "
                    "it was verified), the wording for each episode type and the suggested orders.",
                )
            ),
            Paragraph((Strong("Every card says: "), content.wording.disclaimer)),
            *rulebook.episode_type_blocks(content),
        ]
        indicators = [_indicator(p) for p in patterns]
        if "critical" in indicators:
            blocks += rulebook.next_steps_blocks(content)
        for pattern, indicator in zip(patterns, indicators, strict=True):
            blocks += rulebook.pattern_blocks(content, pattern, indicator, sources_doc, code_text)
        if rule == "R-03":
            blocks += _asra_notes(directory)
        book = RuleBook(f"{labels['title']}: {rule}", content.version, tuple(blocks), ())
        pages[rule] = rulebook.to_html(book)
    return pages
