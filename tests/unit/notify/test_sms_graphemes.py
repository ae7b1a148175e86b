"""Shortening a reply never splits what a reader sees as one character."""

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify.sms import ELLIPSIS, cut_words, fit_sms, sms_info

FLAG_ID = "\U0001f1ee\U0001f1e9"  # 🇮🇩: two regional indicators
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # 👨‍👩‍👧: joined by ZWJ
_PIECES = [
    "a", "b", " ", "-", ",", "\U0001f1ee", "\U0001f1e9", "\u200d", "\U0001f468",
    "\U0001f469", "\U0001f3fd", "\ufe0f", "\u0301", "e", "\u0915", "\u094d",
    "\u0937", "\r", "\n", FLAG_ID, FAMILY,
]  # fmt: skip
_texts = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=300).map("".join),
    st.text(max_size=300),
)


def boundaries(text: str) -> set[int]:
    return {0} | {m.end() for m in regex.finditer(r"\X", text)}


def test_a_run_of_flags_is_cut_between_flags() -> None:
    result = cut_words(FLAG_ID * 20, 13)
    assert result == FLAG_ID * 5 + ELLIPSIS


def test_a_reply_over_budget_keeps_its_flags_whole() -> None:
    # A flag is four UTF-16 units: 73 units, three over a single UCS-2 segment.
    result = fit_sms("Terima kasih " + FLAG_ID * 15, 1)
    assert result == "Terima kasih " + FLAG_ID * 13 + ELLIPSIS


@settings(max_examples=300, deadline=None)
@given(text=_texts, limit=st.integers(min_value=2, max_value=60))
def test_cut_words_keeps_whole_grapheme_clusters_within_the_limit(text: str, limit: int) -> None:
    result = cut_words(text, limit)
    assert len(result) <= limit
    if result != text:
        kept = result.removesuffix(ELLIPSIS)
        assert text.startswith(kept) and len(kept) in boundaries(text)


@settings(max_examples=300, deadline=None)
@given(text=_texts, max_segments=st.integers(min_value=1, max_value=3))
def test_fit_sms_keeps_whole_grapheme_clusters_within_the_budget(
    text: str, max_segments: int
) -> None:
    result = fit_sms(text, max_segments)
    assert sms_info(result).segments <= max_segments
    if result != text:
        core = text.strip()
        kept = result.removesuffix(ELLIPSIS)
        assert core.startswith(kept) and len(kept) in boundaries(core)
