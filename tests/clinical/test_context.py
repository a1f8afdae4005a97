"""The assertion-context engine (clinical-spec §3.4): how each kind of term scopes a finding.

Each test names one behaviour of :mod:`service.clinical.context` on the shipped term lists
(``cards/context.yaml``); the corpus test scores the engine as a whole.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from service import content as content_module
from service.clinical import findings
from service.clinical.context import ContextRules, conflicts
from service.clinical.text import TextMatcher, words
from service.content import Content
from service.errors import ContentError
from tests.clinical.conftest import condition, observation

CARDS = Path(__file__).resolve().parents[2] / "cards"


@pytest.fixture(scope="module")
def matcher(content: Content) -> TextMatcher:
    return content.lexicon.text


def said(matcher: TextMatcher, text: str) -> list[tuple[str, str]]:
    return [(hit.concept, hit.assertion) for hit in matcher.mentions(text)]


def test_a_denial_covers_every_item_of_a_list(matcher: TextMatcher) -> None:
    # The defect of issue 12: the scope used to stop at the first comma.
    assert said(matcher, "denies weakness, numbness or retention in legs") == [
        ("leg_weakness", "negated"),
        ("leg_numbness", "negated"),
        ("urinary_retention", "negated"),
    ]
    assert matcher.find_concepts("denies weakness, numbness or retention in legs") == ()


def test_only_affirmed_mentions_are_concepts(matcher: TextMatcher) -> None:
    text = "Denies fever but now new bilateral leg weakness"
    assert said(matcher, text) == [("fever", "negated"), ("leg_weakness", "affirmed")]
    assert [(h.concept, h.laterality) for h in matcher.find_concepts(text)] == [
        ("leg_weakness", "bilateral")
    ]


@pytest.mark.parametrize(
    ("text", "assertion"),
    [
        ("history of cauda equina syndrome 2015", "historical"),
        ("h/o epidural abscess", "historical"),
        ("epidural abscess years ago", "historical"),
        ("mother had cauda equina syndrome", "family"),
        ("cauda equina syndrome in her mother", "family"),
        ("return if cauda equina syndrome symptoms", "hypothetical"),
        ("MRI to r/o epidural haematoma", "hypothetical"),
        ("cauda equina syndrome has resolved", "resolved"),
        ("no evidence of epidural haematoma", "negated"),
        ("epidural haematoma: negative", "negated"),
        ("suspected epidural haematoma", "affirmed"),
    ],
)
def test_each_class_has_forward_and_backward_triggers(
    matcher: TextMatcher, text: str, assertion: str
) -> None:
    assert said(matcher, text) == [("spinal_emergency_diagnosis", assertion)]


def test_pseudo_trigger_is_no_trigger_and_ends_an_open_scope(matcher: TextMatcher) -> None:
    assert said(matcher, "no change in leg weakness") == [("leg_weakness", "affirmed")]
    assert said(matcher, "denies fever, no increase in back pain") == [
        ("fever", "negated"),
        ("back_pain", "affirmed"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "no fever but legs numb",
        "no fever however legs numb",
        "no fever, c/o numb legs",
        "no fever; numb legs",
        "no fever. numb legs",
        "no fever, now numb legs",
        "no fever, new numb legs",
        "Obs: no fever: numb legs",
    ],
)
def test_termination_ends_the_scope(matcher: TextMatcher, text: str) -> None:
    assert said(matcher, text) == [("fever", "negated"), ("leg_numbness", "affirmed")]


def test_longest_term_wins_so_no_new_keeps_its_scope(matcher: TextMatcher) -> None:
    # "new" ends a scope, but inside the trigger "no new" it is part of the trigger.
    assert said(matcher, "no new weakness in legs") == [("leg_weakness", "negated")]
    assert said(matcher, "denies fever or new weakness in legs") == [
        ("fever", "negated"),
        ("leg_weakness", "negated"),
    ]


def test_word_post_trigger_reaches_back_over_its_own_clause_only(matcher: TextMatcher) -> None:
    assert said(matcher, "legs still weak and fever resolved") == [
        ("leg_weakness", "affirmed"),
        ("fever", "resolved"),
    ]
    assert said(matcher, "legs weak, fever absent") == [
        ("leg_weakness", "affirmed"),
        ("fever", "negated"),
    ]


def test_list_label_reaches_back_over_the_list(matcher: TextMatcher) -> None:
    assert said(matcher, "weakness, numbness in legs: negative") == [
        ("leg_weakness", "negated"),
        ("leg_numbness", "negated"),
    ]
    assert said(matcher, "fever - none") == [("fever", "negated")]


def test_list_label_counts_only_at_the_end_of_a_clause(matcher: TextMatcher) -> None:
    # ": no" followed by a finding is a colon (termination) and then the pre-trigger "no".
    assert said(matcher, "Neuro: no weakness in legs") == [("leg_weakness", "negated")]
    assert said(matcher, "Fever: no, legs weak") == [
        ("fever", "negated"),
        ("leg_weakness", "affirmed"),
    ]


def test_a_new_subject_after_a_comma_starts_a_clause(matcher: TextMatcher) -> None:
    assert said(matcher, "no fever, legs numb") == [
        ("fever", "negated"),
        ("leg_numbness", "affirmed"),
    ]
    # Not after a comma: "legs" inside the list is not a new subject.
    assert said(matcher, "denies fever or numb legs") == [
        ("fever", "negated"),
        ("leg_numbness", "negated"),
    ]


def test_persisting_term_affirms_whatever_covers_the_finding(matcher: TextMatcher) -> None:
    assert said(matcher, "no fever, leg numbness unchanged") == [
        ("fever", "negated"),
        ("leg_numbness", "affirmed"),
    ]


def test_words_of_a_finding_phrase_are_never_context_terms(matcher: TextMatcher) -> None:
    assert said(matcher, "not able to lift legs") == [("leg_weakness", "affirmed")]
    assert said(matcher, "patient not passing urine") == [("urinary_retention", "affirmed")]


def test_first_class_in_content_order_is_reported(matcher: TextMatcher) -> None:
    assert matcher.context.precedence[0] == "negated"
    assert said(matcher, "no history of back pain") == [("back_pain", "negated")]


def test_scope_is_read_per_sentence_and_semicolon(matcher: TextMatcher) -> None:
    assert said(matcher, "Denies back pain. Legs weak; no fever") == [
        ("back_pain", "negated"),
        ("leg_weakness", "affirmed"),
        ("fever", "negated"),
    ]


def test_words_tokenises_list_marks_but_not_joining_dashes() -> None:
    assert words("Weakness - none; L4-5: neg") == ["weakness", "-", "none", "l4", "5", ":", "neg"]
    assert words("pins-and-needles") == ["pins", "and", "needles"]


# -- content: the lists are validated at startup --


def _spec() -> dict[str, Any]:
    doc = yaml.safe_load((CARDS / "context.yaml").read_text(encoding="utf-8"))
    return dict(doc["languages"][doc["language"]])


def test_shipped_lists_have_no_conflicts() -> None:
    assert conflicts(_spec(), words) == []


def test_a_term_listed_as_trigger_and_termination_is_a_conflict() -> None:
    spec = _spec()
    spec["termination"] = [*spec["termination"], "denies"]
    assert conflicts(spec, words) == ["'denies' is listed as pre:negated, termination"]


def test_a_pre_and_post_trigger_of_one_class_is_allowed() -> None:
    spec = _spec()
    assert "resolved" in spec["classes"]["resolved"]["pre"]
    assert "resolved" in spec["classes"]["resolved"]["post"]
    rules = ContextRules.from_content({"language": "en", "languages": {"en": spec}}, words)
    assert rules.assert_spans(["resolved", "fever"], [(1, 2)]) == ["resolved"]
    assert rules.assert_spans(["fever", "resolved"], [(0, 1)]) == ["resolved"]


@pytest.fixture
def cards_copy(tmp_path: Path) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(CARDS, target)
    return target


def _edit(cards: Path, change: Any) -> None:
    path = cards / "context.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def test_content_with_a_conflict_refuses_to_load(cards_copy: Path) -> None:
    _edit(cards_copy, lambda d: d["languages"]["en"]["pseudo"].append("no"))
    with pytest.raises(ContentError) as error:
        content_module.load(cards_copy)
    assert ("context.yaml", "$.languages.en", "'no' is listed as pre:negated, pseudo") in (
        error.value.problems
    )


def test_unknown_language_or_class_refuses_to_load(cards_copy: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["language"] = "de"
        doc["languages"]["en"]["classes"]["rumoured"] = {"pre": ["gossip"], "post": []}

    _edit(cards_copy, change)
    with pytest.raises(ContentError) as error:
        content_module.load(cards_copy)
    files = {problem[0] for problem in error.value.problems}
    assert files == {"context.yaml"}
    assert any("rumoured" in problem[2] for problem in error.value.problems)


def test_missing_context_file_refuses_to_load(cards_copy: Path) -> None:
    (cards_copy / "context.yaml").unlink()
    with pytest.raises(ContentError) as error:
        content_module.load(cards_copy)
    assert ("context.yaml", "$", "file is missing") in error.value.problems


# -- every text the service reads goes through the assertion --

NOW = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)
LOCAL = "http://example.org/local-codes"


def _concepts(resources: list[dict[str, Any]], content: Content) -> list[str]:
    conditions = [r for r in resources if r["resourceType"] == "Condition"]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    found = findings.collect(conditions, observations, content.lexicon, content.settings, NOW)
    return sorted(f.concept for f in found.findings)


def _variants(text: str) -> list[dict[str, Any]]:
    """One resource per text field: code.text, an uncoded coding.display, note, valueString."""
    at = NOW - timedelta(hours=2)
    return [
        condition(None, text=text, recorded=at),
        condition("x-1", LOCAL, display=text, recorded=at),
        condition(None, text="Nursing note", note=text, recorded=at),
        observation(None, text="Neuro check", effective=at, value_string=text),
    ]


@pytest.mark.parametrize("field", ["code.text", "coding.display", "note.text", "valueString"])
def test_every_text_field_keeps_only_affirmed_findings(content: Content, field: str) -> None:
    index = ["code.text", "coding.display", "note.text", "valueString"].index(field)
    denied = _variants("Pt denies weakness, numbness or retention in legs")[index]
    history = _variants("History of cauda equina syndrome; mother had back pain")[index]
    affirmed = _variants("Denies fever but now new weakness in both legs")[index]
    assert _concepts([denied], content) == []
    assert _concepts([history], content) == []
    assert _concepts([affirmed], content) == ["leg_weakness"]


# Every term clinical-spec §3.4 names, with the class (or role) this content gives it.
SPEC_TERMS = {
    "pre:negated": [
        "no",
        "denies",
        "denied",
        "without",
        "negative for",
        "free of",
        "absence of",
        "not",
        "never had",
        "no evidence of",
        "ruled out",
    ],
    "pre:hypothetical": ["rule out", "r/o", "risk of", "if", "should", "watch for", "return if"],
    "pre:historical": ["history of", "h/o"],
    "pre:family": ["family history of", "mother had"],
    "pre:resolved": ["resolved"],
    "post:negated": ["was denied", ": negative", "- none", "absent", "ruled out"],
    "post:resolved": ["resolved"],
    "termination": [
        "but",
        "however",
        "although",
        "except",
        "apart from",
        "reports",
        "complains of",
        "presents with",
        "now",
        "new",
    ],
}


@pytest.mark.parametrize("role", list(SPEC_TERMS))
def test_every_term_the_spec_names_is_in_the_content(role: str) -> None:
    spec = _spec()
    if role == "termination":
        listed = spec["termination"]
    else:
        direction, name = role.split(":")
        listed = spec["classes"][name][direction]
    assert set(SPEC_TERMS[role]) <= set(listed)


@pytest.mark.parametrize(
    "text",
    [
        "Both legs numb",
        "Weakness in legs resolved, now new urinary retention",
        "If fever, return",
        "Mother had back pain",
    ],
)
def test_a_scope_never_crosses_a_sentence_end(matcher: TextMatcher, text: str) -> None:
    alone = said(matcher, text)
    for before in ("Denies fever, headache or back pain.", "History of sciatica;", "Return if!"):
        assert said(matcher, f"{before} {text}")[-len(alone) :] == alone


# -- the outward walk assigns what the definition says --


def _by_definition(
    rules: ContextRules, tokens: list[str], targets: list[tuple[int, int]]
) -> list[str]:
    """Every term against every target, the obvious way (quadratic; the engine walks outward)."""
    covered = {i for s, e in targets for i in range(s, e)}
    found = rules._terms(tokens, covered)
    words_before = [0]
    for token in tokens:
        words_before.append(words_before[-1] + token[0].isalnum())
    stops = [f for f in found if f.term.stop]
    breaks = [i for i, t in enumerate(tokens) if t in rules.clause_breaks and i not in covered]
    out = []
    for start, end in targets:
        classes = set()
        for f in found:
            if f.term.pre and f.end <= start:
                near = words_before[start] - words_before[f.end] < rules.forward_scope_words
                if near and not any(f.end <= s.start and s.end <= start for s in stops):
                    classes.add(f.term.pre)
            elif f.term.looks_back and f.start >= end:
                near = words_before[f.start] - words_before[end] < rules.backward_scope_words
                open_ = not any(end <= s.start and s.end <= f.start for s in stops)
                clause = f.term.spans_list or not any(end <= b < f.start for b in breaks)
                if near and open_ and clause:
                    classes.add(f.term.post or "affirmed")
        if "affirmed" in classes:
            out.append("affirmed")
        else:
            out.append(next((c for c in rules.precedence if c in classes), "affirmed"))
    return out


_TOKENS = [
    "no", "denies", "history", "of", "h", "o", "if", "resolved", "has", "worn", "off", "but",
    "now", "new", "change", "in", ",", ":", "-", "none", "negative", "and", "or", "legs",
    "unchanged", "x", "y", "z", "pt", "mother", "had",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([*_TOKENS, "F"]), max_size=40))
def test_outward_walk_equals_the_definition(matcher: TextMatcher, tokens: list[str]) -> None:
    targets = [(i, i + 1) for i, t in enumerate(tokens) if t == "F"]
    tokens = ["weakness" if t == "F" else t for t in tokens]
    rules = matcher.context
    assert rules.assert_spans(tokens, targets) == _by_definition(rules, tokens, targets)


def test_a_long_run_on_sentence_costs_linear_time(matcher: TextMatcher) -> None:
    # 100,000 characters with no sentence end: every target against every term would be some
    # 40 million comparisons (seconds); the outward walk stops at the window or the next stop.
    text = "no leg weakness but numb legs, " * 3_300
    started = time.process_time()
    hits = matcher.find_concepts(text)
    assert time.process_time() - started < 2.0
    assert [h.concept for h in hits] == ["leg_numbness"]
