"""Recognising clinical concepts in free text, with simple negation (clinical-spec §3.4).

Red flags are often documented only as text ("both legs numb and can't pee"). This module finds
the curated phrases of ``cards/text.yaml`` as whole-word sequences, skips phrases governed by a
negation cue ("denies leg numbness"), and reads laterality words in the same sentence. It is a
deliberately small, predictable matcher: every hit can be explained to a clinician.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.clinical.memo import text_memo

# Words, plus commas as tokens of their own so a comma can end a negation's scope.
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|,")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_SENTENCE_BREAK = re.compile(r"[.;:!?\n]+")

Phrase = tuple[str, ...]


def words(text: str) -> list[str]:
    """Lower-case words (and commas) of ``text``; typographic apostrophes are folded to ASCII."""
    return _WORD.findall(text.lower().translate(_APOSTROPHES))


def _phrases(raw: Iterable[Iterable[str]]) -> tuple[Phrase, ...]:
    return tuple(tuple(w for part in phrase for w in words(part)) for phrase in raw)


@dataclass(frozen=True)
class TextHit:
    """A concept found in text: its name, the phrase that matched, and any laterality stated."""

    concept: str
    phrase: str
    laterality: str | None


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
    terminators: frozenset[str]
    scope_words: int
    post_scope_words: int
    _findings: _PhraseIndex
    _procedures: _PhraseIndex
    _laterality_phrases: _PhraseIndex
    _cues: _PhraseIndex
    _post_cues: _PhraseIndex
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
    def from_content(cls, doc: Mapping[str, Any]) -> TextMatcher:
        """Build the matcher from the parsed ``cards/text.yaml`` document (already validated)."""
        negation = doc["negation"]
        findings = doc["findings"]
        procedures = doc["procedures"]
        laterality = doc["laterality"]
        return cls(
            requires_any={
                name: frozenset(w for item in spec.get("requires_any", ()) for w in words(item))
                for name, spec in findings.items()
            },
            procedure_order={p["class"]: n for n, p in reversed(list(enumerate(procedures)))},
            terminators=frozenset(negation["terminators"]),
            scope_words=int(negation["scope_words"]),
            post_scope_words=int(negation["post_scope_words"]),
            _findings=_PhraseIndex(
                (name, p) for name, spec in findings.items() for p in _phrases(spec["phrases"])
            ),
            _procedures=_PhraseIndex(
                (p["class"], phrase) for p in procedures for phrase in _phrases(p["phrases"])
            ),
            _laterality_phrases=_PhraseIndex(
                (side, p) for side, phrases in laterality.items() for p in _phrases(phrases)
            ),
            _cues=_PhraseIndex(("cue", p) for p in _phrases([c] for c in negation["cues"])),
            _post_cues=_PhraseIndex(
                ("cue", p) for p in _phrases([c] for c in negation["post_cues"])
            ),
        )

    # -- public API ---------------------------------------------------------------------------

    def find_concepts(self, text: str) -> tuple[TextHit, ...]:
        """Every non-negated finding concept in ``text``, once per concept, in text order."""
        return self._concepts_memo(text)

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
            tokens = words(sentence)
            if not tokens:
                continue
            spans = self._findings.find(tokens)
            if not spans:
                continue
            laterality = self._laterality(tokens)
            covered = {i for s in spans for i in range(s.start, s.end)}
            token_set = set(tokens)
            cues: list[_Span] | None = None
            post_cues: list[_Span] | None = None
            for span in spans:
                if span.key in hits:
                    continue
                needed = self.requires_any.get(span.key)
                if needed and not (needed & token_set):
                    continue
                if cues is None or post_cues is None:
                    cues, post_cues = self._cues.find(tokens), self._post_cues.find(tokens)
                if self._negated(tokens, span, covered, cues, post_cues):
                    continue
                hits[span.key] = TextHit(
                    span.key, " ".join(tokens[span.start : span.end]), laterality
                )
        return tuple(hits.values())

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

    def _negated(
        self,
        tokens: Sequence[str],
        span: _Span,
        covered: set[int],
        cues: Sequence[_Span],
        post_cues: Sequence[_Span],
    ) -> bool:
        start = max(0, span.start - self.scope_words)
        # A terminator between a cue and the phrase ends the cue's scope.
        for cue in cues:
            if cue.end > span.start or cue.start < start:
                continue
            if any(i in covered for i in range(cue.start, cue.end)):
                continue
            between = tokens[cue.end : span.start]
            if not any(w in self.terminators for w in between):
                return True
        after_end = min(len(tokens), span.end + self.post_scope_words)
        for cue in post_cues:
            if not (span.end <= cue.start and cue.end <= after_end):
                continue
            if any(i in covered for i in range(cue.start, cue.end)):
                continue
            if not any(w in self.terminators for w in tokens[span.end : cue.start]):
                return True
        return False
