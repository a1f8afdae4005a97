"""Assertion context: what medspaCy, negspacy and our own engine cost per sentence.

Measures import time, pipeline build time and CPU time per sentence over the assertion corpus
(``tests/clinical/data/assertion_corpus.yaml``), and how many labelled findings each tool reads
as labelled. medspaCy and negspacy are not dependencies of the project: run those two modes with
a scratch venv outside the repository (docs/clinical-validation.md, "Assertion context: library
or own engine", gives the commands and the numbers). Only the standard library and PyYAML are
needed besides the tool measured.

    python bench/assertion_libraries.py own|medspacy|negspacy
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "clinical" / "data" / "assertion_corpus.yaml"
ROUNDS = 20
# When a tool reads a concept several ways in one sentence: affirmed if any mention is (what a
# rule would see), else the first of these (the precedence of cards/context.yaml).
ORDER = ("affirmed", "negated", "family", "resolved", "historical", "hypothetical")
Reader = Callable[[str], dict[str, set[str]]]


def _phrases() -> dict[str, list[str]]:
    text = yaml.safe_load((ROOT / "cards" / "text.yaml").read_text(encoding="utf-8"))
    return {k: [" ".join(p) for p in v["phrases"]] for k, v in text["findings"].items()}


def _medspacy() -> Reader:
    import medspacy  # type: ignore[import-not-found]
    from loguru import logger  # type: ignore[import-not-found]
    from medspacy.ner import TargetRule  # type: ignore[import-not-found]

    logger.remove()  # PyRuSH logs every token at DEBUG level, which would dominate the timing
    nlp = medspacy.load()  # blank English + PyRuSH sentences + target matcher + ConText rules
    nlp.get_pipe("medspacy_target_matcher").add(
        [TargetRule(p, k) for k, ps in _phrases().items() for p in ps]
    )

    def read(text: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for ent in nlp(text).ents:
            m = ent._
            name = (
                "negated"
                if m.is_negated
                else "family"
                if m.is_family
                else "historical"
                if m.is_historical
                else "hypothetical"
                if m.is_hypothetical
                else "affirmed"
            )
            out.setdefault(ent.label_, set()).add(name)
        return out

    return read


def _negspacy() -> Reader:
    import spacy  # type: ignore[import-not-found]
    from negspacy.negation import Negex  # type: ignore[import-not-found]  # noqa: F401

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    phrases = _phrases()
    ruler.add_patterns([{"label": k, "pattern": p} for k, ps in phrases.items() for p in ps])
    nlp.add_pipe("negex", config={"ent_types": list(phrases)})

    def read(text: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for ent in nlp(text).ents:
            out.setdefault(ent.label_, set()).add("negated" if ent._.negex else "affirmed")
        return out

    return read


def _own() -> Reader:
    sys.path.insert(0, str(ROOT))
    from service.clinical.text import TextMatcher

    cards = ROOT / "cards"
    matcher = TextMatcher.from_content(
        yaml.safe_load((cards / "text.yaml").read_text(encoding="utf-8")),
        yaml.safe_load((cards / "context.yaml").read_text(encoding="utf-8")),
    )

    def read(text: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for hit in matcher.mentions(text):  # never memoised: the full reading every time
            out.setdefault(hit.concept, set()).add(hit.assertion)
        return out

    return read


def measure(tool: str) -> dict[str, Any]:
    """Import + build time, CPU microseconds per sentence, agreement with the labels."""
    corpus = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    sentences = [entry["text"] for entry in corpus]
    started = time.perf_counter()
    read = {"own": _own, "medspacy": _medspacy, "negspacy": _negspacy}[tool]()
    ready = time.perf_counter()
    for text in sentences[:20]:
        read(text)
    per_sentence = []
    for _ in range(ROUNDS):
        cpu = time.process_time()
        for text in sentences:
            read(text)
        per_sentence.append((time.process_time() - cpu) / len(sentences) * 1e6)
    agree = total = 0
    for entry in corpus:
        got = read(entry["text"])
        for concept, want in entry["expect"].items():
            seen = got.get(concept, set())
            have = next((name for name in ORDER if name in seen), None)
            total += 1
            agree += have == want
    return {
        "tool": tool,
        "import_and_build_s": round(ready - started, 3),
        "cpu_us_per_sentence_median": round(statistics.median(per_sentence), 1),
        "sentences": len(sentences),
        "labelled_findings": total,
        "read_as_labelled": agree,
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "own")))
