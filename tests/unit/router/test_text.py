"""Normalisation of SMS Indonesian and Banjar Malay, and the lexicon loader."""

from __future__ import annotations

import shutil
import textwrap
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapor.contracts import Priority
from lapor.directory import REGIONS_DIR, DirectoryError
from services.router.text import (
    Lexicon,
    Normalizer,
    load_lexicon,
    raw_words,
    sastrawi_stem,
)

BANJAR = REGIONS_DIR / "banjar"


@cache
def banjar_normalizer() -> Normalizer:
    vocabulary = {"banjir", "listrik", "sampah", "kebakaran", "pdam", "sp4n", "ak1", "lubang"}
    return Normalizer(load_lexicon(BANJAR), vocabulary)


def words(text: str) -> list[str]:
    return list(banjar_normalizer().normalize(text).words)


def stems(text: str) -> list[str]:
    return list(banjar_normalizer().normalize(text).stems)


def test_lowercase_and_punctuation() -> None:
    assert raw_words("JLN. RUSAK!!! (km-12)") == ["jln", "rusak", "km", "12"]
    assert raw_words("Pelayanan café") == ["pelayanan", "cafe"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jln rsk tdk diperbaiki", ["jalan", "rusak", "tidak", "diperbaiki"]),
        ("sdh 3 hr gk ada yg dtg", ["sudah", "3", "hari", "tidak", "ada", "yang", "dtg"]),
        ("tlg utk dgn krn", ["tolong", "untuk", "dengan", "karena"]),
        ("ga gak blm udh", ["tidak", "tidak", "belum", "sudah"]),
        ("rs rmh skt", ["rumah", "sakit", "rumah", "sakit"]),
    ],
)
def test_abbreviations(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("banyu kada mengalir", ["air", "tidak", "mengalir"]),
        ("ulun handak bulik", ["saya", "mau", "pulang"]),
        ("jalan licak banar", ["jalan", "becek", "benar"]),
        ("lampu pajah, kadap", ["lampu", "padam", "gelap"]),
        ("wadah nang lawas", ["tempat", "yang", "lama"]),
        ("kakanakan garing", ["anak", "anak", "sakit"]),
    ],
)
def test_banjar_malay(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_stretched_letters_collapse_sensibly() -> None:
    assert words("tolooong parahhh") == ["tolong", "parah"]
    # a real double letter survives
    assert words("maaaf") == ["maaf"]
    assert words("gakk") == ["tidak"]


def test_reduplication_with_digit() -> None:
    assert words("anak2") == ["anak", "anak"]
    assert words("mabuk2an") == ["mabuk", "mabukan"]


def test_numbers_glued_to_words_are_split_but_known_terms_kept() -> None:
    assert words("3kg") == ["3", "kg"]
    assert words("sp4n ak1") == ["sp4n", "ak1"]
    # amounts of money read as money
    assert words("500rb") == ["500", "uang"]


def test_colloquial_and_banjar_affixes() -> None:
    assert words("nolak dibersihin tabakar") == ["menolak", "dibersihkan", "terbakar"]
    assert stems("ngangkut kabanjiran") == ["angkut", "banjir"]
    # m- for the nasal prefix, alone or with -in: mukul, mukulin, nampar, motong
    assert stems("mukul mukulin nampar motong") == ["pukul", "pukul", "tampar", "potong"]
    # ordinary words starting with m stay as they are
    assert stems("makan mobil mati murid mahal") == ["makan", "mobil", "mati", "murid", "mahal"]


def test_banjar_function_words() -> None:
    assert words("banyu naik ka rumah wan kakanakan kada kawa kaluar") == [
        "air", "naik", "ke", "rumah", "dan", "anak", "anak", "tidak", "bisa", "keluar",
    ]  # fmt: skip


def test_stemming_and_pinned_roots() -> None:
    assert stems("kebanjiran pelayanan ditolak") == ["banjir", "layan", "tolak"]
    # the stemmer would turn these into unrelated words (tinggal, keras)
    assert stems("meninggal kekerasan") == ["meninggal", "kekerasan"]
    assert stems("pemadaman") == ["padam"]
    # pins also hold with a possessive
    assert stems("perawatnya") == ["perawat"]
    # handled is no hand, updated is not new, expelled is not leaving, embezzlement
    # is not darkness, a car park is where something happened
    assert stems("ditangani tangan diperbarui baru") == ["tangani", "tangan", "perbarui", "baru"]
    assert stems("dikeluarkan keluar") == ["keluarkan", "keluar"]
    assert stems("penggelapan gelap parkiran parkir") == [
        "penggelapan",
        "gelap",
        "parkiran",
        "parkir",
    ]


def test_stemming_is_cached() -> None:
    sastrawi_stem("perbaikannya")
    before = sastrawi_stem.cache_info().hits
    sastrawi_stem("perbaikannya")
    assert sastrawi_stem.cache_info().hits == before + 1


def test_typos_are_corrected_against_the_vocabulary_only() -> None:
    text = banjar_normalizer().normalize("bnjir, lstrik padam, kebakarn")
    assert text.words == ("banjir", "listrik", "padam", "kebakaran")
    assert ("bnjir", "banjir") in text.corrections
    # short words, real words and place names are left alone
    assert words("bjr") == ["bjr"]
    assert words("banjar pasir") == ["banjar", "pasir"]


def test_positions_skip_stopwords() -> None:
    text = banjar_normalizer().normalize("air di rumah kami tidak mengalir")
    assert text.positions == (0, 1, 1, 2, 2, 3)
    assert text.text == "air di rumah saya tidak mengalir"


def test_terms_keep_stopwords_they_need() -> None:
    normalizer = banjar_normalizer()
    assert normalizer.term("tidak terima") == ("tidak", "terima")
    assert normalizer.term("air di rumah") == ("air", "rumah")


def test_normalizer_without_lexicon() -> None:
    text = Normalizer(Lexicon.empty()).normalize("Jalan Berlubang")
    assert text.words == ("jalan", "berlubang")
    assert text.stems == ("jalan", "lubang")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_normalises_consistently(text: str) -> None:
    result = banjar_normalizer().normalize(text)
    assert len(result.words) == len(result.stems) == len(result.positions)
    assert result.text == " ".join(result.words)
    assert list(result.positions) == sorted(result.positions)


SMS_WORDS = st.sampled_from(
    "jln rusak tdk banyu kada anak2 tolooong 500rb bnjir pdam mati listrik yg sdh ulun rs "
    "KEBAKARAN !! kec. e-ktp".split()
)


@settings(max_examples=200, deadline=None)
@given(st.lists(SMS_WORDS, max_size=25).map(" ".join))
def test_normalising_twice_changes_nothing(text: str) -> None:
    once = banjar_normalizer().normalize(text)
    twice = banjar_normalizer().normalize(once.text)
    assert twice.words == once.words


# --- lexicon loading ----------------------------------------------------------


def test_banjar_lexicon_has_urgency_rules_as_data() -> None:
    lexicon = load_lexicon(BANJAR)
    levels = {rule.level for rule in lexicon.urgency}
    assert levels == {Priority.URGENT, Priority.HIGH}
    assert lexicon.replacements["tdk"] == ("tidak",)
    assert lexicon.replacements["banyu"] == ("air",)
    assert "kalau" in lexicon.hypothetical


def write(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body), encoding="utf-8")


def test_lexicon_extends_and_falls_back_to_parent(tmp_path: Path) -> None:
    shutil.copytree(BANJAR, tmp_path / "banjar")
    write(tmp_path / "kota" / "agencies.yaml", "extends: banjar\n")
    write(
        tmp_path / "kota" / "lexicon.yaml",
        """
        extends: banjar
        abbreviations: {bsk: besok, tdk: tidak}
        urgency:
          urgent:
            - name: flood or rising water
              when: [air bah]
        """,
    )
    lexicon = load_lexicon(tmp_path / "kota")
    assert lexicon.replacements["banyu"] == ("air",)
    flood = [r for r in lexicon.urgency if r.name == "flood or rising water"]
    assert len(flood) == 1 and flood[0].when == ("air bah",)

    # a region without its own lexicon uses the one it extends
    write(tmp_path / "desa" / "agencies.yaml", "extends: banjar\n")
    assert load_lexicon(tmp_path / "desa").replacements["kada"] == ("tidak",)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("colour: blue\n", r"unknown top-level keys \['colour'\]"),
        ("stopwords: [yang, no]\n", r"stopwords must be a list of words"),
        ("abbreviations: {tdk: [tidak]}\n", r"abbreviations: 'tdk': must map a word"),
        ("urgency: {urgent: [{name: x}]}\n", r"urgency\.urgent\[0\] \(x\): 'when' is empty"),
        ("urgency: {urgent: [{when: [a]}]}\n", r"each rule needs a name"),
        ("urgency: {low: []}\n", r"only 'urgent' and 'high'"),
    ],
)
def test_invalid_lexicon_is_reported(tmp_path: Path, body: str, expected: str) -> None:
    write(tmp_path / "r" / "lexicon.yaml", body)
    with pytest.raises(DirectoryError, match=expected):
        load_lexicon(tmp_path / "r")


def test_missing_lexicon_without_parent(tmp_path: Path) -> None:
    write(tmp_path / "r" / "agencies.yaml", "agencies: {}\n")
    with pytest.raises(DirectoryError, match="no lexicon"):
        load_lexicon(tmp_path / "r")
