"""Remembered text readings: each distinct short text is read once, results never change.

The text matcher is the costliest part of reading a chart, and charts repeat their texts. These
tests pin the memo's contract: a repeat is not read again, long texts are never stored, the
memo is bounded, and a remembered answer is exactly the fresh reading.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service import content as content_module
from service.clinical.memo import forget_all, text_memo
from service.clinical.text import TextMatcher, words
from service.content import Content


def counting_reader() -> tuple[list[str], object]:
    seen: list[str] = []

    def read(text: str) -> tuple[str, ...]:
        seen.append(text)
        return tuple(text.split())

    return seen, read


def test_a_repeated_text_is_read_once() -> None:
    seen, read = counting_reader()
    memo = text_memo(read)  # type: ignore[arg-type]
    first = memo("site clean and dry")
    again = memo("site clean and dry")
    assert again is first
    assert seen == ["site clean and dry"]


def test_long_texts_are_read_every_time_and_not_stored() -> None:
    seen, read = counting_reader()
    memo = text_memo(read, longest=10)  # type: ignore[arg-type]
    memo("a" * 11)
    memo("a" * 11)
    assert seen == ["a" * 11, "a" * 11]
    assert memo.cache_info().currsize == 0  # type: ignore[attr-defined]


def test_the_memo_is_bounded() -> None:
    _seen, read = counting_reader()
    memo = text_memo(read, size=4)  # type: ignore[arg-type]
    for n in range(100):
        memo(f"text {n}")
    assert memo.cache_info().currsize == 4  # type: ignore[attr-defined]


def test_forget_all_empties_every_memo() -> None:
    seen, read = counting_reader()
    memo = text_memo(read)  # type: ignore[arg-type]
    memo("fever")
    forget_all()
    memo("fever")
    assert seen == ["fever", "fever"]


def test_the_matcher_reads_a_repeated_text_once(content: Content) -> None:
    matcher = content.lexicon.text
    text = "new numbness of both legs since this morning"
    assert matcher.find_concepts(text) is matcher.find_concepts(text)
    assert matcher.laterality_of(text) == "bilateral"
    assert matcher.word_set(text) is matcher.word_set(text)


def test_each_content_load_has_its_own_memo(content: Content) -> None:
    other = content_module.load()
    text = "patient reports urinary retention"
    assert other.lexicon.text.find_concepts(text) == content.lexicon.text.find_concepts(text)
    assert other.lexicon.text.find_concepts(text) is not content.lexicon.text.find_concepts(text)


_VOCABULARY = (
    "no", "denies", "new", "numb", "numbness", "weakness", "both", "legs", "left", "right",
    "leg", "back", "pain", "fever", "urinary", "retention", "cannot", "can't", "pee", "feel",
    "epidural", "catheter", "site", "red", "and", "but", ",", ".", "since", "headache",
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=14))
def test_remembered_readings_equal_fresh_readings(content: Content, tokens: list[str]) -> None:
    matcher: TextMatcher = content.lexicon.text
    text = " ".join(tokens)
    for _ in range(2):  # the second round is answered from the memo
        assert matcher.find_concepts(text) == matcher._read_concepts(text)
        assert matcher.procedure_class(text) == matcher._read_procedure_class(text)
        assert matcher.word_set(text) == frozenset(words(text))
        assert matcher.laterality_of(text) == matcher._laterality(words(text))
