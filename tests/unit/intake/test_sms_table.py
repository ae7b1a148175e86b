"""Real-world SMS variants, good and bad, against `parse_sms`."""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lapor.contracts import RejectionReason
from services.intake.sms import (
    DEFAULT_REGIONS,
    CitizenReply,
    Invalid,
    InvalidReason,
    NewComplaint,
    ParsedSms,
    Rating,
    RegionKeywords,
    Reopen,
    StatusQuery,
    parse_sms,
)
from services.intake.text import MAX_SMS_TEXT, clean_text, meaningful_words

REGIONS = {"BANJAR": "banjar", "MARTAPURA": "martapura"}
ID1 = "LPR-7K3M-9QX2T"
ID2 = "LPR-Z1H8-60V37"
WRONG_CHECK = "LPR-7K3M-9QX2A"
TRANSPOSED = "LPR-7K3M-9XQ2T"

LONG_BODY = "jalan di desa kami rusak parah dan berlubang sejak musim hujan " * 18
HUGE_SMS = ("BANJAR " + "jalan rusak parah " * 120)[:2000]


@dataclass(frozen=True)
class Rejected:
    """Expected rejection; the detail is free text and not compared."""

    reason: InvalidReason


def ok(text: str, region: str = "banjar", **flags: bool) -> NewComplaint:
    return NewComplaint(region=region, text=text, **flags)


def kept_long(result: ParsedSms) -> None:
    assert result == ok(LONG_BODY.strip())
    assert len(LONG_BODY) > 1000


def truncated_huge(result: ParsedSms) -> None:
    assert isinstance(result, NewComplaint)
    assert result.truncated
    assert 0 < len(result.text) <= MAX_SMS_TEXT
    assert HUGE_SMS.startswith("BANJAR " + result.text)
    assert result.text.split()[-1] in {"jalan", "rusak", "parah"}  # cut between words


Expected = NewComplaint | StatusQuery | CitizenReply | Rating | Rejected | Callable[..., None]

CASES: list[tuple[str, str | bytes, Expected]] = [
    # --- the keyword, the way people actually type it
    (
        "plain",
        "BANJAR jalan di desa Sungai Tabuk rusak parah",
        ok("jalan di desa Sungai Tabuk rusak parah"),
    ),
    ("lower case", "banjar jalan rusak parah sekali", ok("jalan rusak parah sekali")),
    ("title case", "Banjar Jalan Rusak Parah", ok("Jalan Rusak Parah")),
    ("colon", "BANJAR: lampu jalan mati sudah seminggu", ok("lampu jalan mati sudah seminggu")),
    ("comma", "banjar, lampu jalan mati sudah seminggu", ok("lampu jalan mati sudah seminggu")),
    ("full stop", "Banjar. lampu jalan mati sudah seminggu", ok("lampu jalan mati sudah seminggu")),
    (
        "dash",
        "BANJAR - sampah menumpuk di pasar Martapura",
        ok("sampah menumpuk di pasar Martapura"),
    ),
    ("colon no space", "BANJAR:sampah menumpuk di pasar", ok("sampah menumpuk di pasar")),
    ("leading spaces", "   BANJAR air PDAM mati tiga hari", ok("air PDAM mati tiga hari")),
    ("leading tab", "\tBANJAR air PDAM mati tiga hari", ok("air PDAM mati tiga hari")),
    ("quoted keyword", '"BANJAR" puskesmas tutup di jam kerja', ok("puskesmas tutup di jam kerja")),
    (
        "short code first",
        "1708 BANJAR puskesmas tutup di jam kerja",
        ok("puskesmas tutup di jam kerja"),
    ),
    (
        "lapor lead-in",
        "Lapor BANJAR puskesmas tutup di jam kerja",
        ok("puskesmas tutup di jam kerja"),
    ),
    (
        "kab. lead-in",
        "Kab. Banjar puskesmas tutup di jam kerja",
        ok("puskesmas tutup di jam kerja"),
    ),
    (
        "two lead-ins",
        "LAPOR KABUPATEN BANJAR puskesmas tutup di jam kerja",
        ok("puskesmas tutup di jam kerja"),
    ),
    (
        "full-width keyword",
        "ＢＡＮＪＡＲ jalan berlubang dekat sekolah",
        ok("jalan berlubang dekat sekolah"),
    ),
    # --- typos of the keyword
    ("typo deletion", "Bnjar jln rusak prh di km 5", ok("jln rusak prh di km 5")),
    ("typo dropped R", "BANJR jalan berlubang dekat sekolah", ok("jalan berlubang dekat sekolah")),
    (
        "typo substitution",
        "banjat jalan berlubang dekat sekolah",
        ok("jalan berlubang dekat sekolah"),
    ),
    ("typo doubled", "BANJARR jalan berlubang dekat sekolah", ok("jalan berlubang dekat sekolah")),
    (
        "typo stuck key",
        "BANJARRRR jalan berlubang dekat sekolah",
        ok("jalan berlubang dekat sekolah"),
    ),
    (
        "typo transposition",
        "BNAJAR jalan berlubang dekat sekolah",
        ok("jalan berlubang dekat sekolah"),
    ),
    # --- content: case, slang, Banjar Malay, emoji
    (
        "all caps",
        "BANJAR JALAN RUSAK PARAH MOHON DIPERBAIKI",
        ok("JALAN RUSAK PARAH MOHON DIPERBAIKI"),
    ),
    (
        "slang",
        "banjar jln tdk diperbaiki sdh 3 bln gk ada kabar",
        ok("jln tdk diperbaiki sdh 3 bln gk ada kabar"),
    ),
    (
        "banjar malay",
        "BANJAR ulun handak balapor, jalan di kampung kami rusak banar",
        ok("ulun handak balapor, jalan di kampung kami rusak banar"),
    ),
    (
        "banjar malay water",
        "BANJAR banyu PDAM kada mengalir sudah saminggu",
        ok("banyu PDAM kada mengalir sudah saminggu"),
    ),
    (
        "emoji kept",
        "BANJAR jalan rusak parah 😡😡 tolong diperbaiki 🙏",
        ok("jalan rusak parah 😡😡 tolong diperbaiki 🙏"),
    ),
    (
        "zwj emoji kept",
        "BANJAR 👨‍👩‍👧 keluarga kami belum dapat bansos",
        ok("👨‍👩‍👧 keluarga kami belum dapat bansos"),
    ),
    (
        "urgent bpjs",
        "BANJAR RSUD menolak pasien BPJS, ibu saya sesak napas!!",
        ok("RSUD menolak pasien BPJS, ibu saya sesak napas!!"),
    ),
    # --- hygiene
    ("newlines", "BANJAR jalan\nrusak\nparah", ok("jalan rusak parah")),
    ("crlf and tabs", "BANJAR jalan\r\nrusak   parah\t\tsekali", ok("jalan rusak parah sekali")),
    ("control chars", "BANJAR jalan\x00 rusak\x07 parah\x1b", ok("jalan rusak parah")),
    ("invalid utf-8 bytes", b"BANJAR jalan \xff\xfe rusak parah", ok("jalan rusak parah")),
    ("valid utf-8 bytes", "BANJAR jalan rusak 😡 parah".encode(), ok("jalan rusak 😡 parah")),
    ("bidi override", "BANJAR jalan\u202e rusak parah", ok("jalan rusak parah")),
    ("stray joiners", "BANJAR \u200d jalan\u200c rusak parah", ok("jalan rusak parah")),
    ("nbsp", "BANJAR jalan rusak\u00a0parah", ok("jalan rusak parah")),
    ("nfd to nfc", "BANJAR Jala\u0301n rusak parah", ok("Jal\u00e1n rusak parah")),
    ("1000+ characters", "BANJAR " + LONG_BODY, kept_long),
    ("2000 characters truncated", HUGE_SMS, truncated_huge),
    # --- anonymous / confidential
    (
        "anonymous",
        "BANJAR #ANONIM kepala desa minta pungli untuk KTP",
        ok("kepala desa minta pungli untuk KTP", anonymous=True),
    ),
    (
        "confidential",
        "BANJAR #RAHASIA anak tetangga dipukuli orang tuanya",
        ok("anak tetangga dipukuli orang tuanya", confidential=True),
    ),
    (
        "both markers",
        "BANJAR #ANONIM #RAHASIA pungli di kantor camat",
        ok("pungli di kantor camat", anonymous=True, confidential=True),
    ),
    (
        "both reversed lower",
        "banjar #rahasia #anonim pungli di kantor camat",
        ok("pungli di kantor camat", anonymous=True, confidential=True),
    ),
    (
        "bare anonymous",
        "BANJAR anonim: kepala desa minta pungli untuk KTP",
        ok("kepala desa minta pungli untuk KTP", anonymous=True),
    ),
    (
        "bare confidential",
        "banjar RAHASIA pungli di kantor camat",
        ok("pungli di kantor camat", confidential=True),
    ),
    (
        "marker glued",
        "BANJAR#ANONIM kepala desa minta pungli",
        ok("kepala desa minta pungli", anonymous=True),
    ),
    (
        "marker with punctuation",
        "Banjar: #Anonim - guru minta uang seragam",
        ok("guru minta uang seragam", anonymous=True),
    ),
    (
        "marker not after keyword",
        "BANJAR jalan rusak, pelapor minta #ANONIM",
        ok("jalan rusak, pelapor minta #ANONIM"),
    ),
    ("only marker", "BANJAR #ANONIM", Rejected(InvalidReason.TOO_SHORT)),
    # --- a second configured region
    ("other region", "MARTAPURA air PDAM keruh dan bau", ok("air PDAM keruh dan bau", "martapura")),
    (
        "other region colon",
        "martapura: air PDAM keruh dan bau",
        ok("air PDAM keruh dan bau", "martapura"),
    ),
    (
        "other region typo",
        "MARTAPRA air PDAM keruh dan bau",
        ok("air PDAM keruh dan bau", "martapura"),
    ),
    (
        "other region two typos",
        "MARTPURAA air PDAM keruh dan bau",
        ok("air PDAM keruh dan bau", "martapura"),
    ),
    (
        "other region anonymous",
        "Martapura #anonim air PDAM keruh dan bau",
        ok("air PDAM keruh dan bau", "martapura", anonymous=True),
    ),
    # --- command words inside a complaint stay complaint text
    (
        "nilai as grades",
        "BANJAR nilai 2 anak saya ditahan sekolah",
        ok("nilai 2 anak saya ditahan sekolah"),
    ),
    ("cek as a verb", "BANJAR cek jalan rusak di desa kami", ok("cek jalan rusak di desa kami")),
    # --- empty, too short, unreadable
    ("empty", "", Rejected(InvalidReason.EMPTY)),
    ("only spaces", "     ", Rejected(InvalidReason.EMPTY)),
    ("only whitespace", "\n\t \r\n", Rejected(InvalidReason.EMPTY)),
    ("only control chars", "\x00\x01\x02\u200b", Rejected(InvalidReason.EMPTY)),
    ("only keyword", "BANJAR", Rejected(InvalidReason.TOO_SHORT)),
    ("only keyword colon", "BANJAR:", Rejected(InvalidReason.TOO_SHORT)),
    ("only keyword spaces", "banjar   ", Rejected(InvalidReason.TOO_SHORT)),
    ("two words", "BANJAR lampu mati", Rejected(InvalidReason.TOO_SHORT)),
    ("one word shouted", "BANJAR tolong!!!", Rejected(InvalidReason.TOO_SHORT)),
    ("only emoji", "BANJAR 😡😡😡", Rejected(InvalidReason.TOO_SHORT)),
    ("keyboard mash", "BANJAR aaa bbb ccc", Rejected(InvalidReason.TOO_SHORT)),
    ("short words", "BANJAR yg di ke 12 RT05", Rejected(InvalidReason.TOO_SHORT)),
    ("no letters at all", "😡😡😡", Rejected(InvalidReason.MALFORMED)),
    ("digits only", "12345 67890", Rejected(InvalidReason.MALFORMED)),
    ("punctuation only", "???", Rejected(InvalidReason.MALFORMED)),
    # --- missing or unknown keyword
    ("missing keyword", "jalan di desa kami rusak parah", Rejected(InvalidReason.UNKNOWN_REGION)),
    (
        "banjir is a word",
        "BANJIR di desa Sungai Tabuk sudah sepinggang",
        Rejected(InvalidReason.UNKNOWN_REGION),
    ),
    ("bandar is a word", "Bandar narkoba di desa kami", Rejected(InvalidReason.UNKNOWN_REGION)),
    (
        "panjar is a word",
        "Panjar rumah belum dikembalikan developer",
        Rejected(InvalidReason.UNKNOWN_REGION),
    ),
    (
        "banjarmasin is another city",
        "BANJARMASIN jalan rusak parah",
        Rejected(InvalidReason.UNKNOWN_REGION),
    ),
    (
        "banjarbaru is another city",
        "BANJARBARU jalan rusak parah",
        Rejected(InvalidReason.UNKNOWN_REGION),
    ),
    ("only lead-in", "LAPOR", Rejected(InvalidReason.UNKNOWN_REGION)),
    (
        "grades without keyword",
        "Nilai rapor anak saya ditahan sekolah",
        Rejected(InvalidReason.UNKNOWN_REGION),
    ),
    ("cek without keyword", "cek jalan rusak di desa kami", Rejected(InvalidReason.UNKNOWN_REGION)),
    # --- status
    ("cek", f"CEK {ID1}", StatusQuery(ID1)),
    ("cek colon lower", f"cek: {ID1.lower()}", StatusQuery(ID1)),
    ("cek mixed case", "Cek lpr-7k3m-9qx2t", StatusQuery(ID1)),
    ("cek with spaces in id", "CEK lpr 7k3m 9qx2t", StatusQuery(ID1)),
    ("cek spaced dashes", "CEK LPR - 7K3M - 9QX2T", StatusQuery(ID1)),
    ("cek without prefix", "CEK 7K3M9QX2T", StatusQuery(ID1)),
    ("cek confusable O", "CEK LPR-Z1H8-6OV37", StatusQuery(ID2)),
    ("cek en dashes and I", "cek LPR–ZIH8–60V37", StatusQuery(ID2)),
    ("cek in brackets", f"CEK ({ID1}).", StatusQuery(ID1)),
    ("cek after keyword", f"BANJAR CEK {ID1}", StatusQuery(ID1)),
    ("cek missing id", "CEK", Rejected(InvalidReason.BAD_TRACKING_ID)),
    ("cek wrong check char", f"CEK {WRONG_CHECK}", Rejected(InvalidReason.BAD_TRACKING_ID)),
    ("cek transposed id", f"CEK {TRANSPOSED}", Rejected(InvalidReason.BAD_TRACKING_ID)),
    ("cek digits", "CEK 12345", Rejected(InvalidReason.BAD_TRACKING_ID)),
    ("cek half id", "CEK LPR-7K3M", Rejected(InvalidReason.BAD_TRACKING_ID)),
    ("cek id with U", "CEK LPR-7K3U-9QX2T", Rejected(InvalidReason.BAD_TRACKING_ID)),
    # --- replies
    (
        "balas",
        f"BALAS {ID1} jalannya di RT 05 dekat masjid",
        CitizenReply(ID1, "jalannya di RT 05 dekat masjid"),
    ),
    (
        "balas colon comma",
        f"balas: {ID1.lower()}, sudah saya foto",
        CitizenReply(ID1, "sudah saya foto"),
    ),
    ("balas one word", f"BALAS {ID1} ok", CitizenReply(ID1, "ok")),
    (
        "balas spaced id",
        "Balas lpr 7k3m 9qx2t air sudah mengalir 🙏",
        CitizenReply(ID1, "air sudah mengalir 🙏"),
    ),
    ("balas no text", f"BALAS {ID1}", Rejected(InvalidReason.EMPTY)),
    (
        "balas wrong id",
        f"BALAS {WRONG_CHECK} sudah diperbaiki",
        Rejected(InvalidReason.BAD_TRACKING_ID),
    ),
    ("balas missing id", "BALAS", Rejected(InvalidReason.BAD_TRACKING_ID)),
    # --- ratings
    (
        "nilai",
        f"NILAI {ID1} 5 terima kasih cepat sekali",
        Rating(ID1, 5, "terima kasih cepat sekali"),
    ),
    ("nilai lower no comment", f"nilai {ID1.lower()} 1", Rating(ID1, 1)),
    ("nilai out of five", f"Nilai: {ID1}, 4/5 lumayan", Rating(ID1, 4, "lumayan")),
    ("nilai trailing dot", f"NILAI {ID1} 3.", Rating(ID1, 3)),
    ("nilai dash comment", f"NILAI {ID1} 2 - lambat sekali", Rating(ID1, 2, "lambat sekali")),
    ("nilai after keyword", f"BANJAR NILAI {ID1} 5", Rating(ID1, 5)),
    ("nilai zero", f"NILAI {ID1} 0", Rejected(InvalidReason.BAD_RATING)),
    ("nilai six", f"NILAI {ID1} 6", Rejected(InvalidReason.BAD_RATING)),
    ("nilai ten", f"NILAI {ID1} 10", Rejected(InvalidReason.BAD_RATING)),
    ("nilai word", f"NILAI {ID1} lima", Rejected(InvalidReason.BAD_RATING)),
    ("nilai negative", f"NILAI {ID1} -1", Rejected(InvalidReason.BAD_RATING)),
    ("nilai missing score", f"NILAI {ID1}", Rejected(InvalidReason.BAD_RATING)),
    ("nilai wrong id", f"NILAI {WRONG_CHECK} 5", Rejected(InvalidReason.BAD_TRACKING_ID)),
    ("nilai missing id", "NILAI", Rejected(InvalidReason.BAD_TRACKING_ID)),
    (
        "buka with reason",
        f"BUKA {ID1} jalan belum juga ditambal",
        Reopen(ID1, "jalan belum juga ditambal"),
    ),
    ("buka lower colon", f"buka: {ID1.lower()}: masih bocor", Reopen(ID1, "masih bocor")),
    ("buka after keyword", f"BANJAR BUKA {ID1} belum beres", Reopen(ID1, "belum beres")),
    ("buka without reason", f"BUKA {ID1}", Rejected(InvalidReason.EMPTY)),
    ("buka wrong id", f"BUKA {WRONG_CHECK} belum", Rejected(InvalidReason.BAD_TRACKING_ID)),
    # "buka" (open) begins ordinary complaints too: only a valid id makes it BUKA.
    (
        "buka as complaint text",
        "BANJAR buka jalan baru ke desa kami sudah dijanjikan tapi belum ada",
        NewComplaint(
            region="banjar",
            text="buka jalan baru ke desa kami sudah dijanjikan tapi belum ada",
        ),
    ),
]


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 70
    assert len(HUGE_SMS) == 2000
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("sms", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sms_variant(sms: str | bytes, expected: Expected) -> None:
    result = parse_sms(sms, REGIONS)
    if isinstance(expected, Rejected):
        assert isinstance(result, Invalid), result
        assert result.reason == expected.reason, result
        assert result.detail
    elif callable(expected):
        expected(result)
    else:
        assert result == expected


def test_region_keywords_object_behaves_like_mapping() -> None:
    keywords = RegionKeywords(REGIONS)
    for _, sms, _ in CASES:
        assert parse_sms(sms, keywords) == parse_sms(sms, REGIONS)


def test_default_regions_is_banjar() -> None:
    assert DEFAULT_REGIONS.keywords == ("BANJAR",)
    assert parse_sms("BANJAR jalan rusak parah", DEFAULT_REGIONS) == ok("jalan rusak parah")
    result = parse_sms("MARTAPURA jalan rusak parah", DEFAULT_REGIONS)
    assert isinstance(result, Invalid)
    assert result.reason is InvalidReason.UNKNOWN_REGION
    assert "BANJAR" in result.detail


@pytest.mark.parametrize(
    ("min_words", "accepted"), [(0, True), (1, True), (2, True), (3, False), (5, False)]
)
def test_min_words_is_configurable(min_words: int, accepted: bool) -> None:
    result = parse_sms("BANJAR lampu mati", REGIONS, min_words=min_words)
    assert (result == ok("lampu mati")) is accepted
    if not accepted:
        assert isinstance(result, Invalid)
        assert result.reason is InvalidReason.TOO_SHORT


def test_keyword_alone_is_too_short_even_with_zero_min_words() -> None:
    result = parse_sms("BANJAR", REGIONS, min_words=0)
    assert isinstance(result, Invalid)
    assert result.reason is InvalidReason.TOO_SHORT


def test_equally_close_regions_are_not_guessed() -> None:
    keywords = RegionKeywords({"TAPIN": "tapin", "TAPIS": "tapis"})
    result = parse_sms("TAPIR jalan rusak parah", keywords)
    assert isinstance(result, Invalid)
    assert result.reason is InvalidReason.UNKNOWN_REGION
    assert parse_sms("TAPIN jalan rusak parah", keywords) == ok("jalan rusak parah", "tapin")


def test_short_keywords_need_an_exact_match() -> None:
    keywords = RegionKeywords({"HSU": "hulu_sungai_utara"})
    expected = ok("jalan rusak parah", "hulu_sungai_utara")
    assert parse_sms("hsu jalan rusak parah", keywords) == expected
    assert isinstance(parse_sms("HSA jalan rusak parah", keywords), Invalid)


@pytest.mark.parametrize(
    "table",
    [
        {},
        {"": "banjar"},
        {"BANJAR": ""},
        {"KAB BANJAR": "banjar"},
        {"B4NJAR": "banjar"},
        {"CEK": "banjar"},
        {"ANONIM": "banjar"},
        {"banjar": "a", "BANJAR": "b"},
    ],
)
def test_bad_region_tables_are_refused(table: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"."):
        RegionKeywords(table)


def test_reasons_extend_the_contract() -> None:
    for reason in RejectionReason:
        assert InvalidReason(reason.value).value == reason.value
    assert Invalid(InvalidReason.TOO_SHORT).rejection_reason is RejectionReason.TOO_SHORT
    assert Invalid(InvalidReason.BAD_RATING).rejection_reason is RejectionReason.BAD_RATING


def test_non_text_input_is_malformed() -> None:
    result = parse_sms(None, REGIONS)  # type: ignore[arg-type]
    assert isinstance(result, Invalid)
    assert result.reason is InvalidReason.MALFORMED


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("jln tdk diperbaiki sdh 3 bln gk", ["jln", "tdk", "diperbaiki", "sdh", "bln"]),
        ("anak-anak jum'at RT05 2x yg", ["anak-anak", "jum'at"]),
        ("aaaa zzz wkwk", ["wkwk"]),
        ("😡 🙏 !!!", []),
    ],
)
def test_meaningful_words(text: str, words: list[str]) -> None:
    assert meaningful_words(text) == words


def test_clean_text_cuts_at_a_word_and_flags_it() -> None:
    cleaned = clean_text("kata " * 400, limit=1600)
    assert cleaned.truncated
    assert len(cleaned.text) <= 1600
    assert cleaned.text.endswith("kata")
    assert clean_text("pendek").truncated is False


def test_clean_text_never_splits_an_emoji_sequence() -> None:
    family = "👨‍👩‍👧"
    cleaned = clean_text("x" * 9 + family, limit=11)
    assert cleaned.truncated
    assert cleaned.text == "x" * 9
