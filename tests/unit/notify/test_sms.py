import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapor.gsm import GSM7_BASIC, GSM7_EXTENSION
from services.notify.sms import (
    ELLIPSIS,
    Encoding,
    Part,
    SmsBudgetError,
    cut_words,
    fit_parts,
    fit_sms,
    is_gsm7,
    sms_info,
    to_gsm7,
    transliterate,
)

NON_GSM = "\u0101"  # ā: a letter outside GSM-7, one UTF-16 unit
EMOJI = "\U0001f600"  # 😀: two UTF-16 units


# --- encoding and counting -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units", "segments"),
    [
        ("", 0, 1),
        ("a" * 160, 160, 1),
        ("a" * 161, 161, 2),
        ("a" * 306, 306, 2),
        ("a" * 307, 307, 3),
        ("a" * 459, 459, 3),
        ("a" * 460, 460, 4),
    ],
)
def test_gsm7_boundaries(text: str, units: int, segments: int) -> None:
    info = sms_info(text)
    assert (info.encoding, info.units, info.segments) == (Encoding.GSM7, units, segments)


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_characters_count_two_septets(char: str) -> None:
    assert sms_info(char).units == 2
    assert sms_info(char * 80).segments == 1
    assert sms_info(char * 81).segments == 2
    assert sms_info("a" * 159 + char).segments == 2


def test_extension_pair_is_never_split_across_parts() -> None:
    # 152 + 2 septets: the euro sign moves to part 2, leaving part 1 one septet short.
    assert sms_info("a" * 152 + "€" + "a" * 151).segments == 2
    info = sms_info("a" * 152 + "€" + "a" * 152)
    assert (info.units, info.segments) == (306, 3)


def test_basic_table_letters_are_gsm7() -> None:
    text = "Δ£éèÑüÇ@¿§_"
    assert all(ch in GSM7_BASIC for ch in text)
    assert sms_info(text).encoding is Encoding.GSM7
    assert sms_info(text).units == len(text)


@pytest.mark.parametrize(
    ("text", "units", "segments"),
    [
        (NON_GSM * 70, 70, 1),
        (NON_GSM * 71, 71, 2),
        (NON_GSM * 134, 134, 2),
        (NON_GSM * 135, 135, 3),
        (EMOJI * 35, 70, 1),
        ("a" * 69 + EMOJI, 71, 2),
    ],
)
def test_ucs2_boundaries(text: str, units: int, segments: int) -> None:
    info = sms_info(text)
    assert (info.encoding, info.units, info.segments) == (Encoding.UCS2, units, segments)


def test_one_non_gsm_character_switches_everything_to_ucs2() -> None:
    assert sms_info("a" * 100).segments == 1
    assert sms_info("a" * 99 + "\u2019").segments == 2  # a curly apostrophe


def test_surrogate_pair_is_never_split_across_parts() -> None:
    assert sms_info(NON_GSM * 66 + EMOJI + NON_GSM * 65).segments == 2
    info = sms_info(NON_GSM * 66 + EMOJI + NON_GSM * 66)
    assert (info.units, info.segments) == (134, 3)


# --- making text GSM-7 ---------------------------------------------------------------


def test_transliterate_typography() -> None:
    text = "\u201cJalan\u201d sudah diperbaiki \u2013 \u2018insya Allah\u2019 besok\u2026"
    assert transliterate(text) == "\"Jalan\" sudah diperbaiki - 'insya Allah' besok..."
    assert is_gsm7(transliterate(text))


def test_transliterate_composes_decomposed_accents() -> None:
    assert transliterate("cafe\u0301") == "café"
    assert is_gsm7(transliterate("cafe\u0301"))


def test_to_gsm7_drops_symbols_and_replaces_unknown_letters() -> None:
    assert to_gsm7(f"Terima kasih {EMOJI}\U0001f64f") == "Terima kasih "
    assert to_gsm7("kota \u0436") == "kota ?"


# --- shortening ------------------------------------------------------------------------


def test_fit_sms_leaves_fitting_text_alone() -> None:
    text = "Laporan BJR-1 diterima."
    assert fit_sms(text, 1, protect=["BJR-1"]) == text


def test_fit_sms_cuts_free_text_at_word_boundary() -> None:
    instruction = " Balas NILAI BJR-2026-000123 <1-5> ke 1708."
    answer = "Jalan di Desa Sungai Tabuk sudah kami tambal sementara " * 10
    result = fit_sms(answer + instruction, 1, protect=[instruction])
    assert result.endswith(ELLIPSIS + instruction)
    assert sms_info(result).segments == 1
    kept = result[: -len(ELLIPSIS + instruction)]
    assert answer.startswith(kept)
    assert answer[len(kept)] == " "  # cut between words


def test_fit_sms_cuts_the_middle_and_keeps_both_ends() -> None:
    head, tail = "Tanggapan atas BJR-7: ", " Kirim NILAI BJR-7 <1-5> ke 1708."
    result = fit_sms(head + "kata " * 100 + tail, 1, protect=[head, tail])
    assert result.startswith(head) and result.endswith(tail)
    assert ELLIPSIS in result
    assert sms_info(result).segments == 1


def test_fit_sms_ellipsis_keeps_gsm7() -> None:
    result = fit_sms("kata " * 200, 2)
    assert sms_info(result).encoding is Encoding.GSM7
    assert result.endswith(ELLIPSIS)


def test_fit_sms_hard_cuts_a_single_long_token() -> None:
    result = fit_sms("x" * 400, 1)
    assert result == "x" * 158 + ELLIPSIS


def test_fit_sms_can_transliterate_first() -> None:
    text = "Jawaban: \u201csudah diperbaiki\u201d " * 4
    assert sms_info(text).encoding is Encoding.UCS2
    result = fit_sms(text, 1, transliterate_typography=True)
    assert result == transliterate(text)
    assert sms_info(result).encoding is Encoding.GSM7


def test_fit_sms_raises_when_protected_text_alone_is_too_long() -> None:
    protected = "BALAS " * 30
    with pytest.raises(SmsBudgetError):
        fit_sms(protected + "tambahan", 1, protect=[protected])


def test_fit_sms_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fit_sms("a", 0)


def test_fit_parts_cuts_higher_rank_first() -> None:
    parts = [
        Part("Dinas Komunikasi, Informatika, Statistik dan Persandian", cuttable=True),
        Part(": "),
        Part("jawaban " * 40, cuttable=True, rank=1),
    ]
    result = fit_parts(parts, 1)
    assert result.startswith("Dinas Komunikasi, Informatika, Statistik dan Persandian: jawaban")
    assert sms_info(result).segments == 1


def test_cut_words() -> None:
    assert cut_words("jalan rusak parah", 20) == "jalan rusak parah"
    assert cut_words("jalan rusak parah sekali", 16) == "jalan rusak.."
    assert len(cut_words("a" * 50, 10)) == 10
    with pytest.raises(ValueError):
        cut_words("abc", 1)


# --- properties --------------------------------------------------------------------------

_FREE_ALPHABET = "abcdefghijklmnopqrstuvwxyz     .,?!-" + "€[]^" + NON_GSM + EMOJI + "\u2019"
_free_text = st.text(alphabet=_FREE_ALPHABET, max_size=600)
# Upper case and digits never occur in the free text, so each token occurs exactly once.
_token = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=24)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(_free_text, min_size=1, max_size=4),
    tokens=st.lists(_token, max_size=3, unique=True),
    max_segments=st.integers(min_value=1, max_value=4),
)
def test_fit_sms_respects_budget_and_keeps_protected(
    chunks: list[str], tokens: list[str], max_segments: int
) -> None:
    tokens = [t for t in tokens if not any(t != o and t in o for o in tokens)]
    pieces = [chunks[0]]
    for i, token in enumerate(tokens):
        pieces += [f" {token} ", chunks[(i + 1) % len(chunks)]]
    text = "".join(pieces)
    result = fit_sms(text, max_segments, protect=tokens)
    assert sms_info(result).segments <= max_segments
    for token in tokens:
        assert token in result
    if sms_info(text).segments <= max_segments:
        assert result == text


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=800), max_segments=st.integers(min_value=1, max_value=3))
def test_fit_sms_without_protection_always_fits(text: str, max_segments: int) -> None:
    assert sms_info(fit_sms(text, max_segments)).segments <= max_segments


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=800))
def test_fitting_gsm7_text_stays_gsm7(text: str) -> None:
    assert is_gsm7(fit_sms(text, 2))
