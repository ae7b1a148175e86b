"""What the console shows, computed without I/O: labels in Bahasa Indonesia, the time
left before a deadline, paging.

Time left is said the way an officer counts it: in working days when a deadline
is days away (counted on the region's working calendar, the one SLA sets the
deadlines with, make-up Saturdays included), in hours when it is within a day,
and as lateness once it has passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from lapor.calendar import WorkingCalendar
from lapor.contracts import State
from lapor.contracts.events import STATE_LABELS

PRIORITY_LABELS: Mapping[str, str] = {
    "urgent": "Mendesak",
    "high": "Tinggi",
    "normal": "Biasa",
}
OUTCOME_LABELS: Mapping[str, str] = {
    "resolved": "Selesai ditangani",
    "not_resolved": "Tidak dapat diselesaikan",
    "duplicate": "Duplikat",
    "out_of_scope": "Di luar kewenangan",
    "withdrawn": "Dicabut pelapor",
    "no_reply": "Tanpa tanggapan pelapor",
}
# The outcomes an officer may choose when answering (the others are the system's).
ANSWER_OUTCOMES: tuple[str, ...] = ("resolved", "not_resolved", "out_of_scope")
ACTION_LABELS: Mapping[str, str] = {
    "acknowledge": "Terima",
    "ask": "Tanya",
    "answer": "Jawab",
    "forward": "Teruskan",
    "note": "Catatan internal",
    "decide_triage": "Putuskan",
    "merge": "Gabungkan",
    "close": "Tutup",
    "reject": "Arsipkan",
}
DEADLINE_LABELS: Mapping[str, str] = {
    "routing": "Disposisi",
    "first_response": "Tanggapan pertama",
    "answer": "Jawaban",
    "first_answer": "Jawaban pertama",
}
CLOCK_LABELS: Mapping[str, str] = {
    "routing": "Disposisi",
    "first_response": "Tanggapan pertama",
    "answer": "Jawaban",
}
ROLE_LABELS: Mapping[str, str] = {"agency": "Petugas OPD", "admin": "Admin", "partner": "Mitra"}
# The states an officer filters the worklist by (intake's open states).
WORKLIST_STATES: tuple[State, ...] = (
    State.ASSIGNED,
    State.IN_PROGRESS,
    State.NEEDS_INFO,
    State.RESPONDED,
)
DEFAULT_PAGE = 25
MAX_PAGE = 200


def state_label(state: str | None) -> str:
    try:
        return STATE_LABELS[State(state)] if state else "-"
    except ValueError:
        return str(state)


def label(table: Mapping[str, str], key: str | None) -> str:
    return table.get(key or "", key or "-")


@dataclass(frozen=True)
class TimeLeft:
    text: str
    overdue: bool
    soon: bool  # within a day: the officer should act today


def time_left(
    deadline: datetime | None, now: datetime, calendar: WorkingCalendar
) -> TimeLeft | None:
    if deadline is None:
        return None
    left = deadline - now
    if left <= timedelta(0):
        return TimeLeft("terlambat " + _span(-left), overdue=True, soon=True)
    if left < timedelta(days=1):
        return TimeLeft(f"{_hours(left)} lagi", overdue=False, soon=True)
    # SLA's own count: the whole working days that are over by the deadline.
    days = calendar.working_days_between(now, deadline)
    if days == 0:  # not one whole working day before it: the office has hours, not days
        return TimeLeft(f"{_hours(left)} lagi (hari libur)", overdue=False, soon=True)
    return TimeLeft(f"{days} hari kerja lagi", overdue=False, soon=False)


def _hours(span: timedelta) -> str:
    hours = int(span.total_seconds() // 3600)
    if hours == 0:
        return f"{max(1, int(span.total_seconds() // 60))} menit"
    return f"{hours} jam"


def _span(span: timedelta) -> str:
    if span < timedelta(days=1):
        return _hours(span)
    return f"{span.days} hari"


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def local_text(value: Any, zone: ZoneInfo) -> str:
    """A time as officers read it: 07/12/2026 14:05 WITA."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    local = moment.astimezone(zone)
    return local.strftime("%d/%m/%Y %H:%M ") + (local.tzname() or "")


def zone_name(zone: ZoneInfo) -> str:
    return {"Asia/Makassar": "WITA", "Asia/Jakarta": "WIB", "Asia/Jayapura": "WIT"}.get(
        zone.key, zone.key
    )


@dataclass(frozen=True)
class Page:
    """Where a list stands: what is shown and the links to the neighbouring pages."""

    offset: int
    limit: int
    total: int
    more_than: bool = False  # `total` and more

    @property
    def first(self) -> int:
        return self.offset + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None


def clamp_page(limit: int | None, offset: int | None) -> tuple[int, int]:
    limit = DEFAULT_PAGE if not limit or limit < 1 else min(limit, MAX_PAGE)
    return limit, max(0, offset or 0)


def query_string(params: Mapping[str, Any], **changes: Any) -> str:
    """The worklist's query with some parameters changed; empty ones dropped."""
    merged = {**params, **changes}
    pairs: list[tuple[str, str]] = []
    for key, value in merged.items():
        values: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, str(v)) for v in values if v not in (None, "", False))
    return urlencode(pairs)


def month_or_current(value: str | None, today: date) -> str:
    """A YYYY-MM month; the current one when the value is missing or malformed."""
    if value and len(value) == 7 and value[4] == "-":
        year, month = value[:4], value[5:]
        if year.isdigit() and month.isdigit() and 1 <= int(month) <= 12:
            return value
    return f"{today.year:04d}-{today.month:02d}"


def mask_once(secret: str) -> str:
    """A one-time secret is shown whole exactly once; lists show its start only."""
    return secret[:6] + "…" if len(secret) > 6 else "…"


def history_actor(actor: str) -> str:
    """`agency:budi` -> `budi (OPD)`; a citizen stays `citizen` as intake shows it."""
    role, _, name = actor.partition(":")
    if not name:
        return {"citizen": "Pelapor", "system": "Sistem"}.get(role, role)
    return f"{name} ({ROLE_LABELS.get(role, role)})"


def place_text(place: Any) -> str:
    """A place as intake gives it (kecamatan and desa as {code, name} or as names)."""
    if not place:
        return ""
    if isinstance(place, str):
        return place
    parts = []
    for key in ("desa", "kecamatan"):
        area = place.get(key) if isinstance(place, Mapping) else None
        name = area.get("name") if isinstance(area, Mapping) else area
        if name:
            parts.append(("Kec. " if key == "kecamatan" else "") + str(name))
    return ", ".join(parts)
