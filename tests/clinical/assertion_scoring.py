"""Scoring the assertion-context engine on the labelled corpus (clinical-spec §3.4).

The corpus (``data/assertion_corpus.yaml``) labels every finding concept of each sentence with
the assertion a clinician reads in it. The engine's reading of a concept in a sentence is
``affirmed`` when any of its mentions there is affirmed (that is what a rule would see),
otherwise the first class, in the content's precedence, among its mentions. Precision and recall
are counted per class over (sentence, concept) pairs: a labelled concept the engine does not
find at all is a miss of its class, and a concept the engine finds that is not labelled is a
false positive of the class it reports.

The scores of the last run are kept in :data:`LAST_REPORT` so the terminal summary of the test
run can print them (tests/clinical/conftest.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from service.clinical.context import AFFIRMED
from service.clinical.text import TextMatcher

CORPUS = Path(__file__).parent / "data" / "assertion_corpus.yaml"
NOT_FOUND = "(not found)"

#: Lines of the last scoring, printed at the end of the pytest run.
LAST_REPORT: list[str] = []


@dataclass
class ClassScore:
    """True positives, false positives and false negatives of one assertion class."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass
class Scores:
    """Per-class scores and every disagreement, as ``(text, concept, expected, got)``."""

    classes: dict[str, ClassScore]
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)
    sentences: int = 0
    pairs: int = 0


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    """The labelled sentences."""
    with path.open(encoding="utf-8") as handle:
        corpus = yaml.safe_load(handle)
    assert isinstance(corpus, list)
    return corpus


def reading(matcher: TextMatcher, text: str) -> dict[str, str]:
    """``concept -> assertion`` of every finding concept the engine finds in ``text``."""
    found: dict[str, set[str]] = {}
    for hit in matcher.mentions(text):
        found.setdefault(hit.concept, set()).add(hit.assertion)
    order = (AFFIRMED, *matcher.context.precedence)
    return {c: next(a for a in order if a in seen) for c, seen in found.items()}


def score(matcher: TextMatcher, corpus: Sequence[Mapping[str, Any]]) -> Scores:
    """Precision and recall per assertion class over the corpus."""
    names = (AFFIRMED, *matcher.context.precedence)
    scores = Scores({name: ClassScore() for name in names}, sentences=len(corpus))
    for entry in corpus:
        text, expected = entry["text"], dict(entry["expect"])
        got = reading(matcher, text)
        for concept in sorted(set(expected) | set(got)):
            want = expected.get(concept, NOT_FOUND)
            have = got.get(concept, NOT_FOUND)
            scores.pairs += want != NOT_FOUND
            if want == have:
                scores.classes[want].tp += 1
                continue
            scores.errors.append((text, concept, want, have))
            if want in scores.classes:
                scores.classes[want].fn += 1
            if have in scores.classes:
                scores.classes[have].fp += 1
    return scores


def report(scores: Scores) -> list[str]:
    """The score table (and every disagreement) as text lines for the terminal."""
    lines = [
        f"assertion corpus: {scores.sentences} sentences, {scores.pairs} labelled findings",
        f"{'class':<13} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}",
    ]
    for name, s in scores.classes.items():
        lines.append(
            f"{name:<13} {s.tp:>4} {s.fp:>4} {s.fn:>4} {s.precision:>10.3f} {s.recall:>8.3f}"
        )
    for text, concept, want, have in scores.errors:
        lines.append(f"  disagreement: {concept} expected {want}, got {have}: {text!r}")
    return lines
