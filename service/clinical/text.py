"""Recognising clinical concepts in free text, with simple negation (clinical-spec §3.4).

Red flags are often documented only as text ("both legs numb and can't pee"). This module finds
the curated phrases of ``cards/text.yaml`` as whole-word sequences, skips phrases governed by a
negation cue ("denies leg numbness"), and reads laterality words in the same sentence. It is a
deliberately small, predictable matcher: every hit can be explained to a clinician.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def _find(tokens: Sequence[str], phrases: Iterable[tuple[str, Phrase]]) -> list[_Span]:
    spans: list[_Span] = []
    for key, phrase in phrases:
        n = len(phrase)
        if n == 0:
            continue
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i : i + n]) == phrase:
                spans.append(_Span(i, i + n, key))
    return spans


@dataclass(frozen=True)
class TextMatcher:
    """Finds concepts, procedure classes and laterality in free text."""

    findings: Mapping[str, tuple[Phrase, ...]]
    requires_any: Mapping[str, frozenset[str]]
    procedures: tuple[tuple[str, tuple[Phrase, ...]], ...]
    laterality: Mapping[str, tuple[Phrase, ...]]
    cues: tuple[Phrase, ...]
    post_cues: tuple[Phrase, ...]
    terminators: frozenset[str]
    scope_words: int
    post_scope_words: int

    @classmethod
    def from_content(cls, doc: Mapping[str, Any]) -> TextMatcher:
        """Build the matcher from the parsed ``cards/text.yaml`` document (already validated)."""
        negation = doc["negation"]
        findings = doc["findings"]
        procedures = doc["procedures"]
        laterality = doc["laterality"]
        return cls(
            findings={name: _phrases(spec["phrases"]) for name, spec in findings.items()},
            requires_any={
                name: frozenset(w for item in spec.get("requires_any", ()) for w in words(item))
                for name, spec in findings.items()
            },
            procedures=tuple((p["class"], _phrases(p["phrases"])) for p in procedures),
            laterality={side: _phrases(phr) for side, phr in laterality.items()},
            cues=_phrases([c] for c in negation["cues"]),
            post_cues=_phrases([c] for c in negation["post_cues"]),
            terminators=frozenset(negation["terminators"]),
            scope_words=int(negation["scope_words"]),
            post_scope_words=int(negation["post_scope_words"]),
        )

    # -- public API ---------------------------------------------------------------------------

    def find_concepts(self, text: str) -> list[TextHit]:
        """Every non-negated finding concept in ``text``, once per concept, in text order."""
        hits: dict[str, TextHit] = {}
        for sentence in _SENTENCE_BREAK.split(text):
            tokens = words(sentence)
            if not tokens:
                continue
            laterality = self._laterality(tokens)
            spans = _find(tokens, ((name, p) for name, ps in self.findings.items() for p in ps))
            covered = {i for s in spans for i in range(s.start, s.end)}
            token_set = set(tokens)
            for span in sorted(spans, key=lambda s: s.start):
                if span.key in hits:
                    continue
                needed = self.requires_any.get(span.key)
                if needed and not (needed & token_set):
                    continue
                if self._negated(tokens, span, covered):
                    continue
                hits[span.key] = TextHit(
                    span.key, " ".join(tokens[span.start : span.end]), laterality
                )
        return list(hits.values())

    def procedure_class(self, text: str) -> str | None:
        """The first procedure class (content order) whose phrases occur in ``text``, if any."""
        tokens = words(text)
        for klass, phrases in self.procedures:
            if _find(tokens, ((klass, p) for p in phrases)):
                return klass
        return None

    def mentions_any(self, text: str, names: Iterable[str]) -> str | None:
        """The first of ``names`` (single words, e.g. drug names) occurring in ``text``."""
        token_set = set(words(text))
        for name in names:
            if name.lower() in token_set:
                return name
        return None

    def laterality_of(self, text: str) -> str | None:
        """Laterality stated anywhere in ``text`` ("both legs" wins over "left" and "right")."""
        return self._laterality(words(text))

    # -- internals ----------------------------------------------------------------------------

    def _laterality(self, tokens: Sequence[str]) -> str | None:
        found = {
            side
            for side, phrases in self.laterality.items()
            if _find(tokens, ((side, p) for p in phrases))
        }
        if "bilateral" in found or {"left", "right"} <= found:
            return "bilateral"
        if len(found) == 1:
            return found.pop()
        return None

    def _negated(self, tokens: Sequence[str], span: _Span, covered: set[int]) -> bool:
        start = max(0, span.start - self.scope_words)
        # A terminator between a cue and the phrase ends the cue's scope.
        for cue in _find(tokens, (("cue", c) for c in self.cues)):
            if cue.end > span.start or cue.start < start:
                continue
            if any(i in covered for i in range(cue.start, cue.end)):
                continue
            between = tokens[cue.end : span.start]
            if not any(w in self.terminators for w in between):
                return True
        after_end = min(len(tokens), span.end + self.post_scope_words)
        for cue in _find(tokens, (("cue", c) for c in self.post_cues)):
            if not (span.end <= cue.start and cue.end <= after_end):
                continue
            if any(i in covered for i in range(cue.start, cue.end)):
                continue
            if not any(w in self.terminators for w in tokens[span.end : cue.start]):
                return True
        return False
