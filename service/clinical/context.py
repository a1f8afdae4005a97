"""Assertion context of findings in free text, after ConText (clinical-spec §3.4).

A phrase such as "leg weakness" in a note is evidence only when the note asserts it about the
patient, now: "denies weakness, numbness or retention", "history of cauda equina syndrome",
"return if fever", "mother had back pain" and "numbness has worn off" all name findings that are
not there. This module gives every finding phrase of a sentence one assertion, following the
algorithm of ConText (Harkema et al., J Biomed Inform 2009;42:839-51): trigger terms open a
scope forward (pre-triggers) or backward (post-triggers); pseudo-triggers look like triggers but
are not; termination terms and the sentence end close a scope. The lists are content
(``cards/context.yaml``); the code here only says how a scope runs, so it stays small enough to
explain to a clinician, and cheap: the terms are indexed by first word at content load, and the
caller asks only about sentences that contain a finding phrase.

A scope runs across a coordinated list ("denies weakness, numbness or retention" covers all
three), which is what stops the false alarms; the choices below keep that from hiding a red flag
(a missed red flag is the worst error):

- a pseudo-trigger ends any scope open before it ("denies fever, no change in leg weakness");
- a new subject right after a comma or "and" ends it too ("no fever, legs numb");
- a post-trigger that starts with a word ("resolved", "absent") reaches back only over its own
  clause, so "legs still weak and fever resolved" keeps the weakness; one that starts with ":"
  or "-" ("weakness, numbness: negative") reaches back over a whole list, but only at the end of
  a clause ("Neuro: no weakness" is a colon, then "no");
- a persisting term after a finding ("unchanged", "ongoing") affirms it whatever covers it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

AFFIRMED = "affirmed"
#: Every assertion class the content may define, besides affirmed.
CLASSES = ("negated", "family", "resolved", "historical", "hypothetical")

_LIST_MARKS = frozenset({":", "-"})

Phrase = tuple[str, ...]


@dataclass(frozen=True)
class _Term:
    """One term: the class it asserts forward and/or backward, or a scope stop."""

    phrase: Phrase
    pre: str | None = None
    post: str | None = None
    persists: bool = False  # "unchanged", "ongoing": the finding before it is present
    stop: bool = False  # a termination term or a pseudo-trigger
    subject: bool = False  # a stop only right after a comma (or another `new_subject.after`)
    # Derived once at content load (the hot loop reads plain attributes):
    size: int = 0
    looks_back: bool = False
    spans_list: bool = False  # a post-trigger starting with ":" or "-" labels a whole list

    def finished(self) -> _Term:
        """This term with its derived fields filled in."""
        back = self.post is not None or self.persists
        return replace(
            self,
            size=len(self.phrase),
            looks_back=back,
            spans_list=back and len(self.phrase) > 1 and self.phrase[0] in _LIST_MARKS,
        )


def conflicts(spec: Mapping[str, Any], tokenise: Callable[[str], list[str]]) -> list[str]:
    """Terms of one language listed twice in ways that contradict each other.

    A phrase may be both a pre- and a post-trigger of one class ("resolved"), but not a trigger
    of two classes in one direction, nor a trigger and a stop. Content loading reports these.
    """
    roles: dict[Phrase, set[str]] = {}
    for name, lists in spec["classes"].items():
        for direction in ("pre", "post"):
            for term in lists[direction]:
                roles.setdefault(tuple(tokenise(term)), set()).add(f"{direction}:{name}")
    for kind in ("persisting", "pseudo", "termination"):
        for term in spec[kind]:
            roles.setdefault(tuple(tokenise(term)), set()).add(kind)
    for term in spec["new_subject"]["terms"]:
        roles.setdefault(tuple(tokenise(term)), set()).add("new_subject")
    out = []
    for phrase, found in roles.items():
        pre = [r for r in found if r.startswith("pre:")]
        post = [r for r in found if r.startswith("post:")]
        others = found & {"persisting", "pseudo", "termination", "new_subject"}
        if len(pre) > 1 or len(post) > 1 or (others and (pre or post)) or len(others) > 1:
            out.append(f"{' '.join(phrase)!r} is listed as {', '.join(sorted(found))}")
        if not phrase:
            out.append(f"a term has no words: {sorted(found)}")
    return out


@dataclass(frozen=True)
class _Found:
    start: int
    end: int  # exclusive
    term: _Term


@dataclass(frozen=True)
class ContextRules:
    """The trigger, pseudo-trigger and termination terms of one language, indexed by first word.

    ``precedence`` is the order of the classes in the content: when several classes cover one
    phrase ("no history of back pain"), the first is reported. Any of them means the phrase is
    not affirmed, so the order only changes which reason is named.
    """

    language: str
    precedence: tuple[str, ...]
    clause_breaks: frozenset[str]
    subject_after: frozenset[str]
    forward_scope_words: int
    backward_scope_words: int
    _by_first: Mapping[str, tuple[_Term, ...]]

    @classmethod
    def from_content(
        cls, doc: Mapping[str, Any], tokenise: Callable[[str], list[str]]
    ) -> ContextRules:
        """Build the rules of the active language of ``cards/context.yaml`` (already validated).

        ``tokenise`` is the text matcher's own tokeniser, so a term is split into words exactly
        as the texts it is looked for in are.
        """
        language = doc["language"]
        spec = doc["languages"][language]
        terms: dict[Phrase, _Term] = {}

        def add(text: str, **role: Any) -> None:
            phrase = tuple(tokenise(text))
            if phrase:
                # First listing wins; contradicting listings are content errors (conflicts()).
                known = terms.get(phrase, _Term(phrase))
                role = {k: v for k, v in role.items() if not getattr(known, k)}
                terms[phrase] = replace(known, **role)

        for name, lists in spec["classes"].items():
            for text in lists["pre"]:
                add(text, pre=name)
            for text in lists["post"]:
                add(text, post=name)
        for text in spec["persisting"]:
            add(text, persists=True)
        for text in (*spec["pseudo"], *spec["termination"]):
            add(text, stop=True)
        for text in spec["new_subject"]["terms"]:
            add(text, stop=True, subject=True)
        by_first: dict[str, list[_Term]] = {}
        for term in terms.values():
            by_first.setdefault(term.phrase[0], []).append(term.finished())
        return cls(
            language=language,
            precedence=tuple(spec["classes"]),
            clause_breaks=frozenset(w for b in spec["clause_breaks"] for w in tokenise(b)),
            subject_after=frozenset(w for b in spec["new_subject"]["after"] for w in tokenise(b)),
            forward_scope_words=int(spec["forward_scope_words"]),
            backward_scope_words=int(spec["backward_scope_words"]),
            # Longest first, so the first term that matches at a position is the longest one.
            _by_first={
                word: tuple(sorted(found, key=lambda t: -len(t.phrase)))
                for word, found in by_first.items()
            },
        )

    def assert_spans(self, tokens: Sequence[str], targets: Sequence[tuple[int, int]]) -> list[str]:
        """The assertion of each ``(start, end)`` target span of one sentence's ``tokens``.

        Words inside any target are never read as context terms ("can't pee", "not able to
        lift" are findings, not negations).
        """
        covered = {i for start, end in targets for i in range(start, end)}
        found = self._terms(tokens, covered)
        if not any(f.term.pre or f.term.looks_back for f in found):
            return [AFFIRMED] * len(targets)  # the common case: a plain statement
        # words_before[i]: how many words (not punctuation) come before token i.
        words_before = [0]
        for token in tokens:
            words_before.append(words_before[-1] + (token[0].isalnum()))
        # next_break[i]: the first clause break at or after token i (len(tokens) if none).
        count = len(tokens)
        next_break = [count] * (count + 1)
        for i in range(count - 1, -1, -1):
            brk = tokens[i] in self.clause_breaks and i not in covered
            next_break[i] = i if brk else next_break[i + 1]
        starts = [f.start for f in found]
        out = []
        # Each target walks outward from itself to the nearest stop or the end of the window,
        # so a long sentence costs in proportion to its length, not its length squared.
        for start, end in targets:
            classes: set[str] = set()
            k = bisect_left(starts, start)  # found[:k] lie before the target, found[k:] after
            for f in reversed(found[:k]):
                if f.term.stop:
                    break
                if words_before[start] - words_before[f.end] >= self.forward_scope_words:
                    break
                if f.term.pre is not None:
                    classes.add(f.term.pre)
            for f in found[k:]:
                if f.term.stop:
                    break
                if words_before[f.start] - words_before[end] >= self.backward_scope_words:
                    break
                if f.term.looks_back and (f.term.spans_list or next_break[end] >= f.start):
                    classes.add(f.term.post or AFFIRMED)
            if AFFIRMED in classes:
                out.append(AFFIRMED)  # said to persist: nothing else matters
            else:
                out.append(next((c for c in self.precedence if c in classes), AFFIRMED))
        return out

    def _terms(self, tokens: Sequence[str], covered: set[int]) -> list[_Found]:
        """Context terms of a sentence, left to right, the longest at each position.

        A list label (":" or "-" then a word) counts only at the end of a clause: in "Neuro: no
        weakness" the terms are ":" (a termination) and then "no" (a pre-trigger). A new
        subject ("legs", "pt") counts only right after a comma or "and".
        """
        found: list[_Found] = []
        by_first = self._by_first
        count = len(tokens)
        free_from = 0  # the longest term found so far ends here; no overlapping terms
        for i, token in enumerate(tokens):
            candidates = by_first.get(token)
            if candidates is None or i < free_from or i in covered:
                continue
            for term in candidates:
                end = i + term.size
                if end > count:
                    continue
                if term.size > 1 and (
                    tuple(tokens[i:end]) != term.phrase
                    or any(j in covered for j in range(i + 1, end))
                ):
                    continue
                if term.spans_list and end < count and tokens[end] not in self.clause_breaks:
                    continue
                if term.subject and (i == 0 or tokens[i - 1] not in self.subject_after):
                    continue
                found.append(_Found(i, end, term))
                free_from = end
                break
        return found
