"""Properties of `parse_sms` and the text hygiene for arbitrary input."""

import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.sms import (
    CitizenReply,
    Invalid,
    InvalidReason,
    NewComplaint,
    ParsedSms,
    Rating,
    RegionKeywords,
    StatusQuery,
    parse_sms,
)
from services.intake.text import MAX_SMS_TEXT, clean_text, meaningful_word_count

REGIONS = RegionKeywords({"BANJAR": "banjar", "MARTAPURA": "martapura"})
RESULT_TYPES = (NewComplaint, StatusQuery, CitizenReply, Rating, Invalid)
PREFIXES = [
    "",
    " ",
    "BANJAR ",
    "banjar:",
    "Bnjar ",
    "MARTAPURA ",
    "BANJAR #ANONIM ",
    "BANJAR RAHASIA ",
    "CEK ",
    "CEK LPR-7K3M-9QX2T",
    "BALAS LPR-7K3M-9QX2T ",
    "NILAI LPR-7K3M-9QX2T ",
    "NILAI LPR-7K3M-9QX2T 5 ",
    "BANJAR NILAI ",
    "LAPOR KAB ",
    "\x00BANJAR\n",
]
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Default `text()` draws any code point except surrogates, control characters included.
any_text = st.text(max_size=300)
control_heavy = st.lists(
    st.one_of(
        st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]),
        st.sampled_from(["BANJAR", " ", "jalan", "rusak", "#", "😡", "\u200d", "LPR-7K3M-9QX2T"]),
    ),
    max_size=60,
).map("".join)
sms_like = st.builds(lambda prefix, body: prefix + body, st.sampled_from(PREFIXES), any_text)
texts = st.one_of(any_text, control_heavy, sms_like)


def assert_clean(value: str) -> None:
    value.encode("utf-8")  # no lone surrogates reach the database
    assert value == value.strip()
    assert all(unicodedata.category(ch) not in ("Cc", "Cs") for ch in value)
    assert "  " not in value


def check_result(result: ParsedSms, min_words: int = 3) -> None:
    assert isinstance(result, RESULT_TYPES)
    assert sum(isinstance(result, kind) for kind in RESULT_TYPES) == 1
    if isinstance(result, NewComplaint):
        assert result.text
        assert result.region in {"banjar", "martapura"}
        assert len(result.text) <= MAX_SMS_TEXT
        assert meaningful_word_count(result.text) >= min_words
        assert_clean(result.text)
    elif isinstance(result, CitizenReply):
        assert result.text
        assert_clean(result.text)
    elif isinstance(result, Rating):
        assert 1 <= result.score <= 5
        assert_clean(result.comment)
    elif isinstance(result, Invalid):
        assert isinstance(result.reason, InvalidReason)
        assert result.detail


@SETTINGS
@given(texts)
def test_never_raises_and_returns_exactly_one_result(text: str) -> None:
    check_result(parse_sms(text, REGIONS))


@SETTINGS
@given(texts, st.integers(min_value=0, max_value=8))
def test_min_words_is_respected(text: str, min_words: int) -> None:
    check_result(parse_sms(text, REGIONS, min_words=min_words), min_words)


@SETTINGS
@given(st.text(alphabet=st.characters(categories=["Cs", "Lu", "Zs", "Cc"]), max_size=100))
def test_lone_surrogates_do_not_break_parsing(text: str) -> None:
    check_result(parse_sms("BANJAR jalan rusak parah " + text, REGIONS))
    check_result(parse_sms(text, REGIONS))


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_parsed(data: bytes) -> None:
    check_result(parse_sms(data, REGIONS))


@SETTINGS
@given(st.builds(lambda prefix, body: prefix + body, st.sampled_from(PREFIXES), any_text))
def test_plain_mapping_gives_the_same_result(text: str) -> None:
    mapping = {"BANJAR": "banjar", "MARTAPURA": "martapura"}
    assert parse_sms(text, mapping) == parse_sms(text, REGIONS)


@SETTINGS
@given(texts)
def test_cleaning_is_idempotent(text: str) -> None:
    once = clean_text(text)
    twice = clean_text(once.text)
    assert twice.text == once.text
    assert not twice.truncated
    assert_clean(once.text)


@SETTINGS
@given(st.text(min_size=1, max_size=4000), st.integers(min_value=1, max_value=2000))
def test_truncation_respects_the_limit(text: str, limit: int) -> None:
    cleaned = clean_text(text, limit=limit)
    assert len(cleaned.text) <= limit
    assert cleaned.truncated == (len(clean_text(text, limit=10_000).text) > limit)


@SETTINGS
@given(st.text(alphabet=st.characters(categories=["L", "Zs"]), min_size=20, max_size=200))
def test_accepted_complaint_keeps_the_text(body: str) -> None:
    result = parse_sms("BANJAR " + body, REGIONS, min_words=0)
    cleaned = clean_text(body).text
    if isinstance(result, NewComplaint) and not result.anonymous and not result.confidential:
        assert result.text == cleaned
