"""The last check on every card before it leaves the service: no markup, no foreign link.

Record text is escaped where it enters a card (:mod:`service.markdown_text`); this check is the
independent second line. It refuses a card whose ``detail`` holds an HTML tag or comment, an
autolink, a link reference definition, or any link or image whose URL is not one the content in
``cards/`` provides (or the service's own rule-book pages), and a card whose ``links`` or
``source.url`` point anywhere else. A refused card is an internal error (HTTP 500), never a
silently emptied answer: the caller must not read "no cards" as "no concerns".

The scan is a handful of regular expressions over text the service wrote itself, a few hundred
microseconds per call at most.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# "<" followed by a letter, "/", "!" or "?" starts an HTML tag, comment or declaration (and an
# autolink "<scheme:...>"); our own text uses "<" only before digits and spaces ("<1 h").
_TAG = re.compile(r"<[A-Za-z/!?]")
# An inline link or image target: "](" not preceded by a backslash escape of the bracket.
_INLINE_TARGET = re.compile(r"(?<!\\)\]\(\s*<?([^)\s>]*)")
# "[label]: url" at the start of a line is a link reference definition.
_DEFINITION = re.compile(r"(?m)^ {0,3}(?<!\\)\[[^\]\n]*(?<!\\)\]:")
# Reference-style use "[text][ref]" or "[ref][]".
_REFERENCE_USE = re.compile(r"(?<!\\)\]\[")
# Bare URLs that GitHub Flavored Markdown turns into links.
_BARE = re.compile(r"(?i)(?:https?://|ftp://|www\.)[^\s)<>\]]*")


class UnsafeCard(RuntimeError):
    """A card failed the response check; it is not sent (the call answers 500)."""


def _url_allowed(url: str, allowed: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    return url in allowed or any(prefix and url.startswith(prefix) for prefix in prefixes)


def detail_problems(
    detail: str, allowed: frozenset[str], prefixes: tuple[str, ...] = ()
) -> list[str]:
    """What is wrong with a card's markdown ``detail`` (empty when it is safe)."""
    problems = []
    # Each pattern needs a fixed character or substring; looking for it first (in C) spares the
    # regex scans of a ~2,000-character detail that holds none of them, which is nearly every
    # card. Substring searches cost about 1 ns a character, so they are kept few: "]" stands for
    # the three bracket forms, "w." or "W." for every case of "www.".
    if "<" in detail and _TAG.search(detail):
        problems.append("detail holds an HTML tag, comment or autolink")
    targets: list[str] = []
    if "]" in detail:
        if _DEFINITION.search(detail):
            problems.append("detail holds a link reference definition")
        if _REFERENCE_USE.search(detail):
            problems.append("detail holds a reference-style link")
        targets = _INLINE_TARGET.findall(detail)
    for url in targets:
        if not _url_allowed(url, allowed, prefixes):
            problems.append("detail links to a URL that is not from the content")
    if "://" in detail or "w." in detail or "W." in detail:
        linked = set(targets)
        for url in _BARE.findall(detail):
            if url not in linked and not _url_allowed(url, allowed, prefixes):
                problems.append("detail holds a bare URL that is not from the content")
    return problems


def card_problems(
    card: Mapping[str, Any], allowed: frozenset[str], prefixes: tuple[str, ...] = ()
) -> list[str]:
    """Every problem of one card: its detail, its links and its source URL."""
    problems = detail_problems(str(card.get("detail", "")), allowed, prefixes)
    for link in card.get("links", ()):
        if not _url_allowed(str(link.get("url", "")), allowed, prefixes):
            problems.append("a link's URL is not from the content")
    source_url = card.get("source", {}).get("url")
    if source_url is not None and not _url_allowed(str(source_url), allowed, prefixes):
        problems.append("source.url is not from the content")
    return problems


def check_cards(
    cards: Iterable[Mapping[str, Any]], allowed: frozenset[str], prefixes: tuple[str, ...] = ()
) -> None:
    """Raise :class:`UnsafeCard` if any card fails (the message names no record text)."""
    for index, card in enumerate(cards):
        problems = card_problems(card, allowed, prefixes)
        if problems:
            raise UnsafeCard(f"card {index} refused: " + "; ".join(sorted(set(problems))))
