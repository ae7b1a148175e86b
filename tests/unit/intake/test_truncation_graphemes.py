"""Cutting a long SMS never splits what a reader sees as one character."""

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.text import truncate

FLAG_ID = "\U0001f1ee\U0001f1e9"  # 🇮🇩: two regional indicators
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # 👨‍👩‍👧: joined by ZWJ
# Pieces that form multi-code-point clusters when put side by side, on their own
# or in odd orders: lone regional indicators, joiners, skin tones, accents,
# a virama (Devanagari conjunct), CR LF.
_PIECES = [
    "a", "b", " ", "\U0001f1ee", "\U0001f1e9", "\u200d", "\u200c", "\U0001f468",
    "\U0001f469", "\U0001f3fd", "\ufe0f", "\u0301", "\u0323", "e", "\u0915",
    "\u094d", "\u0937", "\r", "\n", FLAG_ID, FAMILY,
]  # fmt: skip
_texts = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=80).map("".join),
    st.text(max_size=80),
)


def boundaries(text: str) -> set[int]:
    return {0} | {m.end() for m in regex.finditer(r"\X", text)}


def test_a_run_of_flags_is_cut_between_flags() -> None:
    result = truncate(FLAG_ID * 20, limit=11)
    assert result.truncated
    assert result.text == FLAG_ID * 5


def test_a_family_emoji_is_kept_whole_or_dropped() -> None:
    result = truncate("Banjir" + FAMILY * 4, limit=13)
    assert result.text == "Banjir" + FAMILY


def test_an_accent_stays_with_its_letter() -> None:
    result = truncate("e\u0301" * 10, limit=5)
    assert result.text == "e\u0301" * 2


def test_a_cut_still_prefers_the_end_of_a_word() -> None:
    assert truncate("jalan rusak parah sekali", limit=14).text == "jalan rusak"


@settings(max_examples=400, deadline=None)
@given(text=_texts, limit=st.integers(min_value=1, max_value=40))
def test_the_cut_keeps_whole_grapheme_clusters_within_the_limit(text: str, limit: int) -> None:
    result = truncate(text, limit=limit)
    assert result.truncated == (len(text) > limit)
    assert len(result.text) <= limit
    assert text.startswith(result.text)
    assert len(result.text) in boundaries(text)
