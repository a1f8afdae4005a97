"""The free-text matcher (clinical-spec §3.4): whole words, context words, negation, laterality."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.clinical.text import TextMatcher, _PhraseIndex, words
from service.content import Content


@pytest.fixture(scope="module")
def matcher(content: Content) -> TextMatcher:
    return content.lexicon.text


def found(matcher: TextMatcher, text: str) -> list[tuple[str, str | None]]:
    return [(hit.concept, hit.laterality) for hit in matcher.find_concepts(text)]


# -- tokenising --


def test_words_are_lower_case_and_keep_apostrophes() -> None:
    # Commas are tokens of their own: they end a negation's scope.
    assert words("Can\u2018t LIFT Legs, L4-5!") == ["can't", "lift", "legs", ",", "l4", "5"]


def test_curly_apostrophe_is_folded_to_a_straight_one() -> None:
    assert words("Can\u2019t pee") == ["can't", "pee"]


# -- whole words only --


@pytest.mark.parametrize(
    "text", ["general anaesthesia", "General anesthesia", "anesthesia", "Disease"]
)
def test_procedure_phrases_match_whole_words_only(matcher: TextMatcher, text: str) -> None:
    # "esi" is inside "anaesthesia"/"anesthesia" and "disease" but is not a word there.
    assert matcher.procedure_class(text) is None


def test_finding_phrases_match_whole_words_only(matcher: TextMatcher) -> None:
    assert found(matcher, "legs weakened by bed rest") == []  # "weakened" is not "weak"
    assert found(matcher, "feverish feeling, leg ok") == []  # "feverish" is not "fever"


@pytest.mark.parametrize(
    ("text", "klass"),
    [
        ("L4-5 interlaminar epidural steroid injection, fluoro", "esi"),
        ("Right L5 TFESI", "esi"),
        ("ESI", "esi"),
        ("Transforaminal injection L5/S1", "esi"),
        ("selective nerve root block right L5", "esi"),
        ("Labour epidural", "catheter"),
        ("labor epidural for delivery", "catheter"),
        ("CSE for caesarean section", "catheter"),
        ("Thoracic epidural for laparotomy", "catheter"),
        ("PCEA", "catheter"),
        ("Caudal block", "single_shot"),
        ("Interlaminar injection L4-5", "single_shot"),
        ("Epidural", "single_shot"),
        ("Lumbar puncture", "neuraxial_other"),
        ("Spinal anaesthesia for TURP", "neuraxial_other"),
        ("intrathecal morphine", "neuraxial_other"),
        ("Knee arthroscopy", None),
    ],
)
def test_procedure_class_from_text(matcher: TextMatcher, text: str, klass: str | None) -> None:
    assert matcher.procedure_class(text) == klass


def test_procedure_class_uses_content_order_most_specific_first(matcher: TextMatcher) -> None:
    # "epidural" alone is single-shot, but "epidural steroid" (esi) comes first in the content.
    assert matcher.procedure_class("caudal epidural steroid injection") == "esi"
    assert matcher.procedure_class("epidural catheter re-sited") == "catheter"


def test_mentions_any_matches_whole_drug_names(matcher: TextMatcher, content: Content) -> None:
    steroids = content.lexicon.corticosteroid_names
    assert matcher.mentions_any("Triamcinolone 80 mg/2 mL", steroids) == "triamcinolone"
    assert matcher.mentions_any("methylprednisolone acetate", steroids) == "methylprednisolone"
    assert matcher.mentions_any("prednisolone 5 mg", steroids) is None
    assert matcher.mentions_any("lidocaine 1%", steroids) is None


# -- findings and required context --


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "both legs numb and can't pee since this morning",
            [("leg_numbness", "bilateral"), ("urinary_retention", "bilateral")],
        ),
        ("can't lift either leg", [("leg_weakness", "bilateral")]),
        ("left leg weak", [("leg_weakness", "left")]),
        ("pins and needles in right foot", [("leg_numbness", "right")]),
        ("heavy legs", [("leg_heaviness", None)]),
        ("incontinent of urine overnight", [("incontinence", None)]),
        ("febrile 38.6", [("fever", None)]),
        ("new low back pain", [("back_pain", None)]),
        ("tender and red around epidural site", [("site_infection", None)]),
        ("MRI: epidural haematoma at T10", [("spinal_emergency_diagnosis", None)]),
        ("unable to walk", [("paraplegia", None)]),
    ],
)
def test_findings_in_text(
    matcher: TextMatcher, text: str, expected: list[tuple[str, str | None]]
) -> None:
    assert found(matcher, text) == expected


def test_saddle_numbness_is_recognised(matcher: TextMatcher) -> None:
    # The longer saddle phrase wins its concept; the overlapping "numb ... legs" also reads as
    # leg numbness (side unknown), which can only add evidence, never hide it.
    assert found(matcher, "numb between the legs") == [
        ("leg_numbness", None),
        ("saddle_anaesthesia", None),
    ]
    assert found(matcher, "perineal numbness") == [("saddle_anaesthesia", None)]


@pytest.mark.parametrize(
    "text",
    [
        "numb fingers",  # numbness needs a leg word in the sentence
        "generalised weakness",  # weakness needs a leg word
        "heavy period",  # heaviness needs a leg word
        "redness around the eye",  # site signs need an insertion-site word
        "swelling of hand",
    ],
)
def test_requires_any_context_word_in_the_same_sentence(matcher: TextMatcher, text: str) -> None:
    assert found(matcher, text) == []


def test_context_word_must_be_in_the_same_sentence(matcher: TextMatcher) -> None:
    assert found(matcher, "Legs fine. Numb fingers.") == []
    assert found(matcher, "Fingers fine; numb legs") == [("leg_numbness", None)]


def test_each_concept_once_in_text_order(matcher: TextMatcher) -> None:
    assert found(matcher, "urinary retention. Legs numb. Retention again, numb feet") == [
        ("urinary_retention", None),
        ("leg_numbness", None),
    ]


# -- negation --


@pytest.mark.parametrize(
    "text",
    [
        "denies leg numbness or urinary retention",
        "no weakness in legs",
        "No leg weakness",
        "no new weakness in either leg",
        "Negative for fever",
        "free of leg pain",
        "without saddle numbness",
        "ruled out cauda equina syndrome",
        "Absence of back pain",
        "leg numbness resolved",
        "leg numbness has gone",
        "back pain denied",
        "fever absent",
    ],
)
def test_negated_findings_are_not_reported(matcher: TextMatcher, text: str) -> None:
    assert found(matcher, text) == []


def test_terminator_ends_the_negation_scope(matcher: TextMatcher) -> None:
    assert found(matcher, "no fever but legs numb") == [("leg_numbness", None)]
    assert found(matcher, "denies back pain, however both legs numb") == [
        ("leg_numbness", "bilateral")
    ]


def test_sentence_break_ends_the_negation_scope(matcher: TextMatcher) -> None:
    assert found(matcher, "No fever. Legs numb.") == [("leg_numbness", None)]


def test_negation_scope_is_limited_in_words(matcher: TextMatcher) -> None:
    # cards/context.yaml: forward_scope_words is 12.
    assert matcher.context.forward_scope_words == 12
    assert found(matcher, "denies any trouble at all during the night then legs numb") == []
    # The trigger "denies any" ends 12 words before "numb": outside the scope.
    text = "denies any trouble at all during the long cold night and then both legs numb"
    assert found(matcher, text) == [("leg_numbness", "bilateral")]


def test_post_cue_reaches_back_only_six_words(matcher: TextMatcher) -> None:
    assert matcher.context.backward_scope_words == 6
    assert found(matcher, "leg numbness for a few hours then resolved") == []
    text = "leg numbness for a few long hours this evening then resolved"
    assert found(matcher, text) == [("leg_numbness", None)]


def test_post_cue_before_the_phrase_does_not_negate_it_backwards(matcher: TextMatcher) -> None:
    # "gone" is only a post-cue; before a phrase it is not a negation.
    assert found(matcher, "headache gone, now legs numb") == [("leg_numbness", None)]


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("can't pee", "urinary_retention"),
        ("can\u2019t pee", "urinary_retention"),
        ("CANNOT PEE", "urinary_retention"),
        ("patient not passing urine", "urinary_retention"),
        ("not able to lift legs", "leg_weakness"),
        ("Can\u2019t lift legs off the bed", "leg_weakness"),
    ],
)
def test_cue_words_inside_a_finding_phrase_are_not_negations(
    matcher: TextMatcher, text: str, concept: str
) -> None:
    assert [c for c, _ in found(matcher, text)] == [concept]


def test_post_cue_after_a_terminator_does_not_negate_the_earlier_phrase(
    matcher: TextMatcher,
) -> None:
    assert found(matcher, "both legs numb but headache gone") == [("leg_numbness", "bilateral")]


# -- laterality --


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("both legs", "bilateral"),
        ("Bilateral lower limbs", "bilateral"),
        ("both lower limbs", "bilateral"),
        ("weakness in either leg", "bilateral"),
        ("left leg", "left"),
        ("RIGHT foot", "right"),
        ("left and right", "bilateral"),
        ("left leg, previously both legs", "bilateral"),
        ("lower limb", None),
    ],
)
def test_laterality_of_text(matcher: TextMatcher, text: str, side: str | None) -> None:
    assert matcher.laterality_of(text) == side


def test_laterality_is_read_per_sentence(matcher: TextMatcher) -> None:
    assert found(matcher, "Left leg numb. Right foot fine.") == [("leg_numbness", "left")]


def test_discharge_planning_is_not_an_insertion_site_sign(matcher: TextMatcher) -> None:
    text = "Plan discharge home after epidural catheter removal"
    assert found(matcher, text) == []


def test_diagnosis_ruled_out_afterwards_is_negated(matcher: TextMatcher) -> None:
    assert found(matcher, "cauda equina syndrome ruled out on MRI") == []


# -- the phrase index finds exactly what trying every phrase everywhere finds --


def _naive_spans(tokens: list[str], phrases: list[tuple[str, tuple[str, ...]]]) -> list[Any]:
    """The obvious matcher (every phrase at every position), ordered as the index promises."""
    spans = [
        (i, i + len(phrase), order, key)
        for order, (key, phrase) in enumerate(phrases)
        for i in range(len(tokens) - len(phrase) + 1)
        if tuple(tokens[i : i + len(phrase)]) == phrase
    ]
    return [(start, end, key) for start, end, _order, key in sorted(spans)]


_VOCABULARY = ["leg", "legs", "weak", "numb", "no", "left", "both", "can't", "pee", ",", "x"]
_PHRASES = [
    ("a", ("leg",)),
    ("b", ("leg", "weak")),
    ("c", ("weak",)),
    ("d", ("both", "legs", "numb")),
    ("e", ("can't", "pee")),
    ("f", ("leg", "weak", "x")),
    ("a", ("numb", "leg")),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=25))
def test_phrase_index_equals_trying_every_phrase_everywhere(tokens: list[str]) -> None:
    index = _PhraseIndex(_PHRASES)
    found_spans = [(s.start, s.end, s.key) for s in index.find(tokens)]
    assert found_spans == _naive_spans(tokens, _PHRASES)
