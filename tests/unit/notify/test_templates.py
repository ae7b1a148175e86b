import copy
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lapor.contracts import STATE_LABELS, Priority, State
from services.notify.labels import (
    OUTCOME_LABELS,
    clock_label,
    escalation_label,
    format_date_id,
    format_datetime_id,
    outcome_label,
    priority_label,
    state_label,
)
from services.notify.sms import ELLIPSIS, Encoding, sms_info
from services.notify.template_contract import CONTRACT, Audience
from services.notify.templates import (
    DEFAULT_TEMPLATE_PATH,
    RenderError,
    TemplateError,
    TemplateSet,
)

CITIZEN = sorted(n for n, spec in CONTRACT.items() if spec.audience is Audience.CITIZEN)
OFFICIAL = sorted(n for n, spec in CONTRACT.items() if spec.audience is Audience.OFFICIAL)

LONGEST_AGENCY = "Dinas Komunikasi, Informatika, Statistik dan Persandian"
TRACKING_ID = "BJR-2026-12-000123"
LONG_ANSWER = (
    "Terima kasih atas laporan Bapak/Ibu. Tim kami sudah meninjau lokasi di Jl. A. Yani "
    "km 40 Martapura pada hari Senin. Lubang jalan sudah ditambal sementara dengan aspal "
    "dingin dan perbaikan permanen dijadwalkan bersama paket pemeliharaan jalan kabupaten "
    "tahun anggaran berikutnya setelah dokumen lelang selesai disusun. "
) * 4

WORST_CASE: dict[str, str] = {
    "score": "5",
    "tracking_id": TRACKING_ID,
    "agency_name": LONGEST_AGENCY,
    "answer_date": format_datetime_id(datetime(2026, 9, 30, 15, 59, tzinfo=UTC)),
    "reopen_until": format_datetime_id(datetime(2026, 9, 30, 15, 59, tzinfo=UTC)),
    "state_label": max(STATE_LABELS.values(), key=len),
    "outcome_label": max(OUTCOME_LABELS.values(), key=len),
    "region_keyword": "BANJAR",
    "guidance": "Kepolisian (telepon 110), Pengadilan Negeri Martapura atau Kantor Pertanahan",
    "question": "Mohon sebutkan alamat lengkap, patokan terdekat dan sejak kapan " * 6,
    "answer": LONG_ANSWER,
    "note": "Laporan ini sudah pernah ditangani sebelumnya dan hasilnya tercatat. " * 5,
}


@pytest.fixture(scope="module")
def templates() -> TemplateSet:
    return TemplateSet.load(DEFAULT_TEMPLATE_PATH)


def values_for(templates: TemplateSet, name: str, source: dict[str, str]) -> dict[str, str]:
    return {var: source[var] for var in templates.get(name).variables if var in source}


# --- the shipped file ------------------------------------------------------------------


def test_default_file_has_exactly_the_contracted_templates(templates: TemplateSet) -> None:
    assert set(templates.names) == set(CONTRACT)


@pytest.mark.parametrize("name", CITIZEN)
def test_citizen_template_fits_budget_with_worst_case_values(
    templates: TemplateSet, name: str
) -> None:
    tpl = templates.get(name)
    assert tpl.max_segments is not None
    text = templates.render(name, **values_for(templates, name, WORST_CASE))
    info = sms_info(text)
    assert info.segments <= tpl.max_segments, text
    assert info.encoding is Encoding.GSM7
    # What the citizen must act on is never cut.
    for var in ("tracking_id", "agency_name", "answer_date", "reopen_until", "region_keyword"):
        if var in tpl.variables and var in tpl.text:
            assert WORST_CASE[var] in text


def test_citizen_budget_is_two_segments_by_default(templates: TemplateSet) -> None:
    budgets = {name: templates.get(name).max_segments for name in CITIZEN}
    # Questions and answers carry the agency's own words and get one more segment.
    assert budgets.pop("answer") == budgets.pop("question") == 3
    assert set(budgets.values()) == {2}


def test_long_answer_is_shortened_but_instructions_survive(templates: TemplateSet) -> None:
    text = templates.render(
        "answer",
        tracking_id=TRACKING_ID,
        agency_name=LONGEST_AGENCY,
        answer=LONG_ANSWER,
        reopen_until="26 Desember 2026",
    )
    assert f'{ELLIPSIS}"' in text
    assert LONG_ANSWER[:80] in text
    assert f"NILAI {TRACKING_ID} <1-5>" in text
    assert f"BUKA {TRACKING_ID} <alasan>" in text
    assert text.endswith("paling lambat 26 Desember 2026.")


def test_ack_reads_naturally(templates: TemplateSet) -> None:
    text = templates.render(
        "ack",
        tracking_id="BJR-2026-000042",
        agency_name="Dinas Pekerjaan Umum dan Penataan Ruang",
        answer_date=format_date_id(date(2026, 12, 12)),
    )
    assert text == (
        "Laporan Anda diterima dengan nomor BJR-2026-000042 dan diteruskan ke Dinas "
        "Pekerjaan Umum dan Penataan Ruang. Jawaban paling lambat 12 Desember 2026. "
        "Cek status: kirim CEK BJR-2026-000042 ke 1708. Terima kasih."
    )


def test_question_explains_how_to_answer(templates: TemplateSet) -> None:
    text = templates.render(
        "question", tracking_id="BJR-1", agency_name="Dinas Sosial", question="Di RT berapa?"
    )
    assert "BALAS BJR-1 <jawaban Anda> ke 1708" in text


def test_rejections_default_to_the_banjar_keyword(templates: TemplateSet) -> None:
    assert "BANJAR jalan rusak di" in templates.render("reject_unknown_region")
    assert "TABALONG jalan rusak di" in templates.render(
        "reject_unknown_region", region_keyword="TABALONG"
    )


def test_empty_optional_note_leaves_no_double_space(templates: TemplateSet) -> None:
    text = templates.render(
        "closed",
        tracking_id="BJR-1",
        outcome_label=outcome_label("resolved"),
        reopen_until="1 Januari 2027",
    )
    assert "  " not in text
    assert "Hasil: Terselesaikan. Beri nilai" in text
    assert text == templates.render(
        "closed",
        tracking_id="BJR-1",
        outcome_label="Terselesaikan",
        reopen_until="1 Januari 2027",
        note=None,
    )


def test_typographic_quotes_in_values_stay_gsm7(templates: TemplateSet) -> None:
    text = templates.render(
        "answer",
        tracking_id="BJR-1",
        agency_name="Dinas Lingkungan Hidup",
        answer="Sampah sudah diangkut \u2013 \u201cterima kasih\u201d atas laporannya\u2026",
        reopen_until="1 Januari 2027",
    )
    assert sms_info(text).encoding is Encoding.GSM7
    assert '- "terima kasih" atas laporannya...' in text


def test_emoji_in_a_long_answer_is_dropped_rather_than_the_answer(
    templates: TemplateSet,
) -> None:
    answer = "Sudah kami perbaiki \U0001f64f " + "dan dipantau setiap minggu oleh petugas " * 3
    text = templates.render(
        "answer",
        tracking_id="BJR-1",
        agency_name="Dinas Pekerjaan Umum dan Penataan Ruang",
        answer=answer,
        reopen_until="1 Januari 2027",
    )
    info = sms_info(text)
    assert info.encoding is Encoding.GSM7 and info.segments <= 3
    assert "Sudah kami perbaiki dan dipantau setiap minggu" in text


def test_whitespace_in_values_is_collapsed_for_sms(templates: TemplateSet) -> None:
    text = templates.render(
        "question",
        tracking_id="BJR-1",
        agency_name="Dinas Sosial",
        question="Di mana\n\n  rumahnya?",
    )
    assert '"Di mana rumahnya?"' in text


# --- render errors ----------------------------------------------------------------------


def test_missing_variable_raises(templates: TemplateSet) -> None:
    with pytest.raises(RenderError, match=r"missing value.*agency_name"):
        templates.render("ack", tracking_id="BJR-1", answer_date="1 Januari 2027")


def test_unknown_variable_raises(templates: TemplateSet) -> None:
    with pytest.raises(RenderError, match=r"unknown value.*agency$"):
        templates.render("ack", tracking_id="BJR-1", agency_name="x", answer_date="y", agency="x")


def test_unknown_template_raises(templates: TemplateSet) -> None:
    with pytest.raises(RenderError, match="unknown template"):
        templates.render("ack_typo")


@pytest.mark.parametrize("bad", [None, datetime(2026, 12, 12, tzinfo=UTC), date(2026, 12, 12)])
def test_unformatted_or_empty_value_raises(templates: TemplateSet, bad: object) -> None:
    with pytest.raises(RenderError):
        templates.render("ack", tracking_id="BJR-1", agency_name="x", answer_date=bad)


def test_overlong_identifier_raises_instead_of_being_cut(templates: TemplateSet) -> None:
    with pytest.raises(RenderError, match=r"tracking_id.*at most 24"):
        templates.render("ack_duplicate", tracking_id="B" * 25)


def test_overlong_agency_name_is_cut_to_its_maximum(templates: TemplateSet) -> None:
    name = "Dinas " + "Pemberdayaan Masyarakat dan Desa " * 3
    text = templates.render("ack", tracking_id="BJR-1", agency_name=name, answer_date="x")
    assert "Dinas Pemberdayaan Masyarakat dan Desa Pemberdayaan.." in text


def test_official_messages_have_subject_and_keep_line_breaks(templates: TemplateSet) -> None:
    values = {
        "tracking_id": "BJR-1",
        "agency_name": "RSUD Ratu Zalecha",
        "category": "Pelayanan rumah sakit",
        "priority_label": priority_label(Priority.URGENT),
        "received_at": format_datetime_id(datetime(2026, 12, 12, 6, 30, tzinfo=UTC)),
        "first_response_date": "13 Desember 2026 pukul 14.30 WITA",
        "answer_date": "15 Desember 2026",
        "complaint_text": "Pasien BPJS ditolak di IGD.\nKatanya kamar penuh.",
    }
    subject = templates.render_subject("official_assignment_urgent", **values)
    body = templates.render("official_assignment_urgent", **values)
    assert subject == "[MENDESAK][LAPOR BJR-1] Segera tangani: laporan untuk RSUD Ratu Zalecha"
    assert "Pasien BPJS ditolak di IGD.\nKatanya kamar penuh." in body
    assert "Catatan disposisi : -" in body  # optional routing note, default
    assert "12 Desember 2026 pukul 14.30 WITA" in body


@pytest.mark.parametrize("name", OFFICIAL)
def test_every_official_template_renders(templates: TemplateSet, name: str) -> None:
    values = {var: f"<{var}>" for var in CONTRACT[name].required}
    assert "${" not in templates.render(name, **values)
    assert "${" not in templates.render_subject(name, **values)


def test_citizen_sms_has_no_subject(templates: TemplateSet) -> None:
    with pytest.raises(RenderError):
        templates.render_subject("ack_duplicate", tracking_id="BJR-1")


# --- property: any GSM-7 values within their limits fit and stay GSM-7 --------------------

_PLAIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,-/()"
_FREE = _PLAIN + "\n!?:;\"'@£$¥èéùìòÇØøÅåÆæßÉ%&<>=+*#§¿¡ÄÖÑÜäöñüà_{}[]~^|\\€"


def _value(templates: TemplateSet, name: str, var: str) -> st.SearchStrategy[str]:
    spec = templates.get(name).variables[var]
    if spec.max_length is None:
        return st.text(alphabet=_FREE, max_size=1500)
    # Identifiers, names and dates never hold GSM-7 extension characters.
    return st.text(alphabet=_PLAIN, min_size=1, max_size=spec.max_length)


@st.composite
def _citizen_render(draw: st.DrawFn, templates: TemplateSet) -> tuple[str, dict[str, str]]:
    name = draw(st.sampled_from(CITIZEN))
    values = {var: draw(_value(templates, name, var)) for var in templates.get(name).variables}
    return name, values


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_gsm7_values_fit_and_stay_gsm7(templates: TemplateSet, data: st.DataObject) -> None:
    name, values = data.draw(_citizen_render(templates))
    text = templates.render(name, **values)
    info = sms_info(text)
    assert info.encoding is Encoding.GSM7
    assert info.segments <= (templates.get(name).max_segments or 0)
    if "tracking_id" in values:
        assert " ".join(values["tracking_id"].split()) in text


# --- load-time validation ------------------------------------------------------------------


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(DEFAULT_TEMPLATE_PATH.read_text(encoding="utf-8")))


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "id.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: Any) -> str:
    with pytest.raises(TemplateError) as info:
        TemplateSet.load(write(tmp_path, data))
    return str(info.value)


def test_round_tripped_default_file_loads(tmp_path: Path, raw: dict[str, Any]) -> None:
    assert set(TemplateSet.load(write(tmp_path, raw)).names) == set(CONTRACT)


def test_undeclared_placeholder_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack"]["text"] += " Hubungi ${operator_phone}."
    assert "ack: placeholder ${operator_phone} is not a declared variable" in load_error(
        tmp_path, raw
    )


def test_declared_but_unused_variable_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack"]["text"] = "Laporan ${tracking_id} diterima, jawaban ${answer_date}."
    assert "'agency_name' is declared but never used" in load_error(tmp_path, raw)


def test_unused_variable_marked_optional_loads(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack"]["text"] = "Laporan ${tracking_id} diterima, jawaban ${answer_date}."
    raw["templates"]["ack"]["variables"]["agency_name"] = {"optional": True}
    templates = TemplateSet.load(write(tmp_path, raw))
    assert templates.render("ack", tracking_id="B-1", answer_date="1 Mei 2027").startswith(
        "Laporan B-1"
    )


def test_unknown_template_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack_extra"] = {"text": "Halo"}
    assert "unknown template 'ack_extra'" in load_error(tmp_path, raw)


def test_missing_template_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["templates"]["status_not_found"]
    del raw["templates"]["official_breach"]
    assert "missing required templates: official_breach, status_not_found" in load_error(
        tmp_path, raw
    )


def test_missing_contract_variable_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["templates"]["status"]["variables"]["state_label"]
    message = load_error(tmp_path, raw)
    assert "status: must declare variable 'state_label'" in message


def test_variable_the_service_does_not_supply_fails_load(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    raw["templates"]["status"]["variables"]["officer"] = {"max_length": 20}
    assert "declares 'officer', which the notify service does not supply" in load_error(
        tmp_path, raw
    )


def test_format_style_placeholder_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack_duplicate"]["text"] = "Nomor {tracking_id}: ${tracking_id}"
    assert "{tracking_id} is not a placeholder here" in load_error(tmp_path, raw)


def test_invalid_dollar_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack_duplicate"]["text"] = "Biaya $5 untuk ${tracking_id}"
    assert "invalid placeholder" in load_error(tmp_path, raw)


def test_non_gsm7_character_in_citizen_text_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack_duplicate"]["text"] = "Laporan \u201c${tracking_id}\u201d sudah ada."
    assert "outside the GSM-7 alphabet" in load_error(tmp_path, raw)


def test_template_that_cannot_fit_its_budget_fails_load(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    raw["templates"]["ack"]["text"] += " Terima kasih atas partisipasi Anda." * 4
    assert "ack: with the longest allowed values the SMS does not fit 2" in load_error(
        tmp_path, raw
    )


def test_citizen_budget_is_configurable(raw: dict[str, Any], tmp_path: Path) -> None:
    path = write(tmp_path, raw)
    assert TemplateSet.load(path, citizen_max_segments=3).get("ack").max_segments == 3
    with pytest.raises(TemplateError, match="does not fit 1 segment"):
        TemplateSet.load(path, citizen_max_segments=1)


def test_bounded_variable_without_limit_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["variables"]["tracking_id"]["max_length"]
    assert "variable 'tracking_id' needs max_length" in load_error(tmp_path, raw)


def test_misspelt_key_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["variables"]["answer"]["shortn"] = True
    assert "variables.answer.shortn" in load_error(tmp_path, raw)


def test_official_template_without_subject_fails_load(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["templates"]["official_breach"]["subject"]
    assert "official_breach: official messages need a subject" in load_error(tmp_path, raw)


def test_optional_contract_variable_must_be_optional_in_file(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    raw["templates"]["closed"]["variables"]["note"] = {"optional": False}
    assert "'note' must be marked optional" in load_error(tmp_path, raw)


def test_all_problems_are_reported_at_once(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["templates"]["ack"]["text"] += " ${x}"
    raw["templates"]["status"]["text"] += " ${y}"
    message = load_error(tmp_path, raw)
    assert "${x}" in message and "${y}" in message


def test_unreadable_files_fail_load(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read"):
        TemplateSet.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("templates: [unclosed", encoding="utf-8")
    with pytest.raises(TemplateError, match="cannot read"):
        TemplateSet.load(broken)


# --- dates --------------------------------------------------------------------------------


def test_format_date_id() -> None:
    assert format_date_id(date(2026, 12, 12)) == "12 Desember 2026"
    assert format_date_id(date(2027, 1, 1)) == "1 Januari 2027"


def test_format_date_id_converts_utc_to_the_region_day() -> None:
    # 16:00 UTC is already midnight in Banjar (WITA, UTC+8).
    deadline = datetime(2026, 12, 12, 16, 0, tzinfo=UTC)
    assert format_date_id(deadline) == "12 Desember 2026"
    assert format_date_id(deadline, "WITA") == "13 Desember 2026"
    assert format_date_id(deadline, "WIB") == "12 Desember 2026"


def test_format_datetime_id() -> None:
    assert (
        format_datetime_id(datetime(2026, 12, 12, 6, 30, tzinfo=UTC))
        == "12 Desember 2026 pukul 14.30 WITA"
    )
    assert format_datetime_id(datetime(2026, 3, 5, 8, 5), "WIB") == "5 Maret 2026 pukul 08.05 WIB"
    jayapura = timezone(timedelta(hours=9))
    assert (
        format_datetime_id(datetime(2026, 8, 17, 10, 0, tzinfo=jayapura), "WIT")
        == "17 Agustus 2026 pukul 10.00 WIT"
    )


def test_format_datetime_id_rejects_unknown_zone() -> None:
    with pytest.raises(ValueError, match="WIB, WITA or WIT"):
        format_datetime_id(datetime(2026, 1, 1, tzinfo=UTC), "CET")


@pytest.mark.parametrize(
    ("month", "name"),
    list(
        enumerate(
            [
                "Januari", "Februari", "Maret", "April", "Mei", "Juni",
                "Juli", "Agustus", "September", "Oktober", "November", "Desember",
            ],
            start=1,
        )
    ),
)  # fmt: skip
def test_month_names(month: int, name: str) -> None:
    assert format_date_id(date(2026, month, 3)) == f"3 {name} 2026"


# --- labels ---------------------------------------------------------------------------------


def test_state_labels() -> None:
    assert {state.value: state_label(state) for state in State} == {
        "received": "Diterima",
        "triage": "Menunggu Verifikasi",
        "assigned": "Didisposisikan",
        "in_progress": "Diproses",
        "needs_info": "Menunggu Pelapor",
        "responded": "Ditanggapi",
        "closed": "Selesai",
        "rejected": "Diarsipkan",
    }
    assert state_label("needs_info") == "Menunggu Pelapor"


def test_outcome_labels_cover_every_outcome() -> None:
    outcomes = ["resolved", "not_resolved", "duplicate", "out_of_scope", "withdrawn", "no_reply"]
    labels = [outcome_label(code) for code in outcomes]
    assert len(set(labels)) == len(outcomes)
    assert outcome_label("resolved") == "Terselesaikan"


@pytest.mark.parametrize(
    ("func", "code"),
    [
        (state_label, "lost"),
        (outcome_label, "solved"),
        (priority_label, "low"),
        (clock_label, "lunch"),
        (escalation_label, "president"),
    ],
)
def test_unknown_codes_raise(func: Any, code: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        func(code)


def test_other_labels() -> None:
    assert priority_label("urgent") == "MENDESAK"
    assert clock_label("first_response") == "tanggapan pertama"
    assert [escalation_label(x) for x in ("liaison", "head", "sekda", "ombudsman")] == [
        "Penghubung LAPOR! Instansi",
        "Kepala Instansi",
        "Sekretaris Daerah",
        "Ombudsman RI Perwakilan Provinsi",
    ]
