"""Recognising clinical concepts in free text, with their assertion context (clinical-spec §3.4).

Red flags are often documented only as text ("both legs numb and can't pee"). This module finds
the curated phrases of ``cards/text.yaml`` as whole-word sequences, gives each one an assertion
(affirmed, negated, historical, hypothetical, family, resolved: :mod:`service.clinical.context`)
and reads laterality words in the same sentence. Callers asking for concepts get the affirmed
ones only, so no rule can take "denies weakness, numbness or retention" as evidence. It is a
deliberately small, predictable matcher: every hit can be explained to a clinician.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.clinical.context import AFFIRMED, ContextRules
from service.clinical.memo import text_memo

# Words, plus commas, colons and free-standing dashes as tokens of their own: a colon ends a
# scope ("Neuro: legs weak"), and ": negative" or "- none" after a list negates the whole list.
# A dash between two words or numbers ("L4-5", "pins-and-needles") is not a token.
# (The dash test comes after the "-" so it costs nothing at the other characters: with the
# look-behind first the tokeniser was about 10 % slower, measured.)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[,:]|-+(?![a-z0-9])|-(?<![a-z0-9]-)-*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
# A semicolon ends a scope as a sentence end does (clinical-spec §3.4).
_SENTENCE_BREAK = re.compile(r"[.;!?\n]+")

Phrase = tuple[str, ...]


def words(text: str) -> list[str]:
    """Lower-case words (and , : -) of ``text``; typographic apostrophes are folded to ASCII."""
    return _WORD.findall(text.lower().translate(_APOSTROPHES))


def _phrases(raw: Iterable[Iterable[str]]) -> tuple[Phrase, ...]:
    return tuple(tuple(w for part in phrase for w in words(part)) for phrase in raw)


@dataclass(frozen=True)
class TextHit:
    """A concept found in text: its name, the phrase that matched, any laterality stated, and
    what the text asserts about it (only ``affirmed`` hits are evidence)."""

    concept: str
    phrase: str
    laterality: str | None
    assertion: str = AFFIRMED


@dataclass(frozen=True)
class _Span:
    start: int
    end: int  # exclusive
    key: str


class _PhraseIndex:
    """Phrases keyed by their first word, so finding them costs one dict lookup per token.

    Trying every phrase at every position was the service's hottest loop (hundreds of phrases,
    every text of every Observation). Candidates under one first word keep the content order,
    so spans come out ordered by position, then by content order: the order the rules and the
    "first phrase wins" choices depend on.
    """

    __slots__ = ("_by_first",)

    def __init__(self, phrases: Iterable[tuple[str, Phrase]]) -> None:
        by_first: dict[str, list[tuple[str, Phrase]]] = {}
        for key, phrase in phrases:
            if phrase:
                by_first.setdefault(phrase[0], []).append((key, phrase))
        self._by_first = {word: tuple(found) for word, found in by_first.items()}

    def find(self, tokens: Sequence[str]) -> list[_Span]:
        """Every occurrence of every phrase in ``tokens``, by start position then content order."""
        spans: list[_Span] = []
        by_first = self._by_first
        count = len(tokens)
        for i, token in enumerate(tokens):
            candidates = by_first.get(token)
            if candidates is None:
                continue
            for key, phrase in candidates:
                end = i + len(phrase)
                if end <= count and (end == i + 1 or tuple(tokens[i:end]) == phrase):
                    spans.append(_Span(i, end, key))
        return spans


@dataclass(frozen=True)
class TextMatcher:
    """Finds concepts, procedure classes and laterality in free text.

    Built once per content load; every phrase list is indexed by first word at that time, so a
    text costs one tokenisation plus a dict lookup per word, and what a text means is remembered
    (:mod:`service.clinical.memo`), so a text the chart repeats is read once.
    """

    requires_any: Mapping[str, frozenset[str]]
    procedure_order: Mapping[str, int]
    context: ContextRules
    _findings: _PhraseIndex
    _procedures: _PhraseIndex
    _laterality_phrases: _PhraseIndex
    _concepts_memo: Callable[[str], tuple[TextHit, ...]] = field(
        init=False, repr=False, compare=False
    )
    _procedure_memo: Callable[[str], str | None] = field(init=False, repr=False, compare=False)
    _laterality_memo: Callable[[str], str | None] = field(init=False, repr=False, compare=False)
    _word_set_memo: Callable[[str], frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The memos hold bound methods of this matcher: they live and die with the content.
        memos = {
            "_concepts_memo": self._read_concepts,
            "_procedure_memo": self._read_procedure_class,
            "_laterality_memo": lambda text: self._laterality(words(text)),
            "_word_set_memo": lambda text: frozenset(words(text)),
        }
        for name, read in memos.items():
            object.__setattr__(self, name, text_memo(read))

    @classmethod
    def from_content(cls, doc: Mapping[str, Any], context: Mapping[str, Any]) -> TextMatcher:
        """Build the matcher from ``cards/text.yaml`` and ``cards/context.yaml`` (validated)."""
        findings = doc["findings"]
        procedures = doc["procedures"]
        laterality = doc["laterality"]
        return cls(
            requires_any={
                name: frozenset(w for item in spec.get("requires_any", ()) for w in words(item))
                for name, spec in findings.items()
            },
            procedure_order={p["class"]: n for n, p in reversed(list(enumerate(procedures)))},
            context=ContextRules.from_content(context, words),
            _findings=_PhraseIndex(
                (name, p) for name, spec in findings.items() for p in _phrases(spec["phrases"])
            ),
            _procedures=_PhraseIndex(
                (p["class"], phrase) for p in procedures for phrase in _phrases(p["phrases"])
            ),
            _laterality_phrases=_PhraseIndex(
                (side, p) for side, phrases in laterality.items() for p in _phrases(phrases)
            ),
        )

    # -- public API ---------------------------------------------------------------------------

    def find_concepts(self, text: str) -> tuple[TextHit, ...]:
        """Every affirmed finding concept in ``text``, once per concept, in text order."""
        return self._concepts_memo(text)

    def mentions(self, text: str) -> tuple[TextHit, ...]:
        """Every finding phrase in ``text`` with its assertion, affirmed or not, in text order.

        For review and tests (the assertion corpus); rules use :meth:`find_concepts`.
        """
        return tuple(
            hit for sentence in _SENTENCE_BREAK.split(text) for hit in self._sentence(sentence)
        )

    def procedure_class(self, text: str) -> str | None:
        """The first procedure class (content order) whose phrases occur in ``text``, if any."""
        return self._procedure_memo(text)

    def word_set(self, text: str) -> frozenset[str]:
        """The distinct lower-case words of ``text`` (see :func:`words`)."""
        return self._word_set_memo(text)

    def mentions_any(self, text: str, names: Iterable[str]) -> str | None:
        """The first of ``names`` (single words, e.g. drug names) occurring in ``text``."""
        token_set = self._word_set_memo(text)
        for name in names:
            if name.lower() in token_set:
                return name
        return None

    def laterality_of(self, text: str) -> str | None:
        """Laterality stated anywhere in ``text`` ("both legs" wins over "left" and "right")."""
        return self._laterality_memo(text)

    # -- internals ----------------------------------------------------------------------------

    def _read_concepts(self, text: str) -> tuple[TextHit, ...]:
        hits: dict[str, TextHit] = {}
        for sentence in _SENTENCE_BREAK.split(text):
            # Most texts name no finding at all: they cost a tokenisation and a lookup per word.
            tokens = words(sentence)
            spans = self._findings.find(tokens) if tokens else None
            if not spans:
                continue
            for hit in self._asserted(tokens, spans):
                if hit.assertion == AFFIRMED and hit.concept not in hits:
                    hits[hit.concept] = hit
        return tuple(hits.values())

    def _sentence(self, sentence: str) -> list[TextHit]:
        """The finding phrases of one sentence (those whose required words it has), asserted."""
        tokens = words(sentence)
        spans = self._findings.find(tokens) if tokens else None
        return self._asserted(tokens, spans) if spans else []

    def _asserted(self, tokens: list[str], spans: list[_Span]) -> list[TextHit]:
        """The found phrases of one sentence that have their required words, with assertions."""
        token_set = set(tokens)
        requires_any = self.requires_any
        kept = [
            n
            for n, span in enumerate(spans)
            if not (needed := requires_any.get(span.key)) or not needed.isdisjoint(token_set)
        ]
        if not kept:
            return []
        laterality = self._laterality(tokens)
        # Every phrase found shields its words from being read as context terms, even one
        # whose required words are missing ("not able to" in "not able to lift the arm").
        assertions = self.context.assert_spans(tokens, [(s.start, s.end) for s in spans])
        return [
            TextHit(
                spans[n].key,
                " ".join(tokens[spans[n].start : spans[n].end]),
                laterality,
                assertions[n],
            )
            for n in kept
        ]

    def _read_procedure_class(self, text: str) -> str | None:
        found = {span.key for span in self._procedures.find(words(text))}
        return min(found, key=self.procedure_order.__getitem__) if found else None

    def _laterality(self, tokens: Sequence[str]) -> str | None:
        found = {span.key for span in self._laterality_phrases.find(tokens)}
        if "bilateral" in found or {"left", "right"} <= found:
            return "bilateral"
        if len(found) == 1:
            return found.pop()
        return None
