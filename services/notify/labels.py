"""Indonesian words of notify's messages: dates as citizens write them, the e-mail
titles, and the labels of states, outcomes, priorities, clocks and escalation levels.

The codes are the contracts' (lapor.contracts); each table gives the one label a
citizen or an official reads for a code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from lapor.contracts import STATE_LABELS, EscalationLevel, Priority, SlaClock, State
from lapor.contracts.commands import Outcome

# --- Indonesian dates --------------------------------------------------------------

MONTHS_ID = (
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
)

# Indonesia has no daylight saving time, so fixed offsets are exact and need no tz database.
TIME_ZONES_ID: Mapping[str, timezone] = MappingProxyType(
    {
        "WIB": timezone(timedelta(hours=7), "WIB"),
        "WITA": timezone(timedelta(hours=8), "WITA"),
        "WIT": timezone(timedelta(hours=9), "WIT"),
    }
)


def _in_zone(value: datetime, tz_abbr: str) -> datetime:
    try:
        zone = TIME_ZONES_ID[tz_abbr]
    except KeyError:
        raise ValueError(f"unknown time zone {tz_abbr!r}; use WIB, WITA or WIT") from None
    # A naive datetime is taken as wall-clock time in that zone already.
    return value if value.tzinfo is None else value.astimezone(zone)


def format_date_id(value: date | datetime, tz_abbr: str | None = None) -> str:
    """'12 Desember 2026'. With `tz_abbr`, an aware datetime is first converted.

    Pass the region's zone for deadlines stored in UTC: 16:00 UTC is already
    the next day in WITA.
    """
    if isinstance(value, datetime) and tz_abbr is not None:
        value = _in_zone(value, tz_abbr)
    return f"{value.day} {MONTHS_ID[value.month - 1]} {value.year}"


def format_datetime_id(value: datetime, tz_abbr: str = "WITA") -> str:
    """'12 Desember 2026 pukul 14.30 WITA' (Indonesian style uses a dot in times)."""
    local = _in_zone(value, tz_abbr)
    return f"{format_date_id(local)} pukul {local:%H.%M} {tz_abbr}"


# --- Indonesian labels ---------------------------------------------------------------

# Short titles of the citizen messages that also go out by e-mail: the subject
# reads "Laporan <nomor>: <judul>".
EMAIL_TITLES: Mapping[str, str] = MappingProxyType(
    {
        "ack": "Laporan diterima",
        "ack_truncated": "Laporan diterima",
        "ack_triage": "Laporan diterima",
        "ack_triage_truncated": "Laporan diterima",
        "ack_duplicate": "Laporan sudah tercatat",
        "question": "Pertanyaan dari instansi",
        "answer": "Tanggapan instansi",
        "closed": "Laporan ditutup",
        "out_of_scope": "Di luar kewenangan pemerintah daerah",
        "deadline_extended": "Batas jawaban diperpanjang",
        "status": "Status laporan",
        "reply_received": "Tambahan informasi diterima",
        "rating_received": "Penilaian diterima",
        "reopened": "Laporan dibuka kembali",
        "withdrawn": "Laporan dicabut",
        "reopen_deadline": "Batas jawaban baru",
    }
)
DEFAULT_EMAIL_TITLE = "Pemberitahuan LAPOR!"


def citizen_email_subject(template: str, tracking_id: str | None) -> str:
    """'Laporan BJR-XXXX-XXXXX: Laporan diterima' (one line, whatever the id holds)."""
    title = EMAIL_TITLES.get(template, DEFAULT_EMAIL_TITLE)
    if not tracking_id:
        return title
    return f"Laporan {' '.join(str(tracking_id).split())}: {title}"


OUTCOME_LABELS: Mapping[Outcome, str] = MappingProxyType(
    {
        Outcome.RESOLVED: "Terselesaikan",
        Outcome.NOT_RESOLVED: "Tidak Dapat Diselesaikan",
        Outcome.DUPLICATE: "Laporan Ganda",
        Outcome.OUT_OF_SCOPE: "Di Luar Kewenangan",
        Outcome.WITHDRAWN: "Dicabut Pelapor",
        Outcome.NO_REPLY: "Tanpa Tanggapan Pelapor",
    }
)

PRIORITY_LABELS: Mapping[Priority, str] = MappingProxyType(
    {Priority.URGENT: "MENDESAK", Priority.HIGH: "Tinggi", Priority.NORMAL: "Biasa"}
)

# The three deadline clocks of a complaint (see lapor.contracts.Deadlines).
CLOCK_LABELS: Mapping[SlaClock, str] = MappingProxyType(
    {
        SlaClock.ROUTING: "verifikasi dan disposisi",
        SlaClock.FIRST_RESPONSE: "tanggapan pertama",
        SlaClock.ANSWER: "jawaban akhir",
    }
)

ESCALATION_LABELS: Mapping[EscalationLevel, str] = MappingProxyType(
    {
        EscalationLevel.LIAISON: "Penghubung LAPOR! Instansi",
        EscalationLevel.HEAD: "Kepala Instansi",
        EscalationLevel.SEKDA: "Sekretaris Daerah",
        EscalationLevel.OMBUDSMAN: "Ombudsman RI Perwakilan Provinsi",
    }
)


def _label(table: Mapping[Any, str], code: str, kind: str) -> str:
    try:
        return table[code]
    except KeyError:
        raise ValueError(f"unknown {kind} {code!r}; known: {', '.join(table)}") from None


def state_label(state: State | str) -> str:
    return _label(STATE_LABELS, state, "state")


def outcome_label(outcome: str) -> str:
    return _label(OUTCOME_LABELS, outcome, "outcome")


def priority_label(priority: Priority | str) -> str:
    return _label(PRIORITY_LABELS, priority, "priority")


def clock_label(clock: str) -> str:
    return _label(CLOCK_LABELS, clock, "deadline clock")


def escalation_label(level: str) -> str:
    return _label(ESCALATION_LABELS, level, "escalation level")
