from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from lapor.calendar import WorkingCalendar
from services.console import domain

WITA = ZoneInfo("Asia/Makassar")
NATIONAL = WorkingCalendar("Asia/Makassar")
# Monday 7 December 2026, 10:00 WITA.
MONDAY = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def test_days_away_are_counted_in_working_days() -> None:
    friday_end = datetime(2026, 12, 11, 23, 59, 59, tzinfo=WITA)
    left = domain.time_left(friday_end, MONDAY, NATIONAL)
    assert left is not None and left.text == "4 hari kerja lagi" and not left.overdue


def test_weekend_and_holidays_do_not_count() -> None:
    next_monday = datetime(2026, 12, 14, 23, 59, 59, tzinfo=WITA)
    assert domain.time_left(next_monday, MONDAY, NATIONAL).text == "5 hari kerja lagi"  # type: ignore[union-attr]
    day_off = WorkingCalendar("Asia/Makassar", extra_days_off=[date(2026, 12, 8)])
    left = domain.time_left(next_monday, MONDAY, day_off)
    assert left is not None and left.text == "4 hari kerja lagi"


def test_within_a_day_in_hours_and_late_as_lateness() -> None:
    left = domain.time_left(MONDAY + timedelta(hours=5, minutes=30), MONDAY, NATIONAL)
    assert left is not None and left.text == "5 jam lagi" and left.soon and not left.overdue
    late = domain.time_left(MONDAY - timedelta(hours=3), MONDAY, NATIONAL)
    assert late is not None and late.overdue and late.text == "terlambat 3 jam"
    days_late = domain.time_left(MONDAY - timedelta(days=2, hours=1), MONDAY, NATIONAL)
    assert days_late is not None and days_late.text == "terlambat 2 hari"
    assert domain.time_left(None, MONDAY, NATIONAL) is None


def test_over_a_weekend_only_hours_are_left() -> None:
    saturday = datetime(2026, 12, 12, 10, 0, tzinfo=WITA)
    sunday_evening = datetime(2026, 12, 13, 20, 0, tzinfo=WITA)
    left = domain.time_left(sunday_evening, saturday, NATIONAL)
    assert left is not None and left.text == "34 jam lagi (hari libur)" and left.soon


def test_paging() -> None:
    page = domain.Page(offset=25, limit=25, total=60)
    assert (page.first, page.last, page.previous_offset, page.next_offset) == (26, 50, 0, 50)
    last = domain.Page(offset=50, limit=25, total=60)
    assert (last.last, last.next_offset) == (60, None)
    assert domain.Page(0, 25, 0).first == 0 and domain.Page(0, 25, 0).previous_offset is None
    assert domain.clamp_page(None, None) == (domain.DEFAULT_PAGE, 0)
    assert domain.clamp_page(10_000, -5) == (domain.MAX_PAGE, 0)


def test_query_string_keeps_filters_and_drops_empty_ones() -> None:
    params = {"status": ["assigned", "needs_info"], "q": "jalan rusak", "overdue": None}
    assert (
        domain.query_string(params, offset=25)
        == "status=assigned&status=needs_info&q=jalan+rusak&offset=25"
    )


def test_labels_and_months() -> None:
    assert domain.state_label("needs_info") == "Menunggu Pelapor"
    assert domain.label(domain.PRIORITY_LABELS, "urgent") == "Mendesak"
    assert domain.history_actor("agency:budi") == "budi (Petugas OPD)"
    assert domain.history_actor("citizen") == "Pelapor"
    assert domain.month_or_current("2026-11", date(2026, 12, 7)) == "2026-11"
    assert domain.month_or_current("2026-13", date(2026, 12, 7)) == "2026-12"
    assert domain.month_or_current(None, date(2026, 1, 2)) == "2026-01"
    place = {"kecamatan": {"code": "63.03.05", "name": "Martapura"}, "desa": {"name": "Jawa"}}
    assert domain.place_text(place) == "Jawa, Kec. Martapura"
    assert domain.local_text("2026-12-07T02:00:00+00:00", WITA) == "07/12/2026 10:00 WITA"
