"""The admins' overview and the monthly accountability, counted without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.intake.domain import open_agency
from services.intake.oversight import accountability, month_bounds, overview_rows
from services.intake.worklist_api import worklist_filters

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _entry(at: datetime, state: str | None, actor: str = "system", **detail: Any) -> dict:
    entry: dict[str, Any] = {"at": at, "state": state, "actor": actor, "reason": ""}
    if detail:
        entry["detail"] = detail
    return entry


def _complaint(cid: str, agency: str, *history: dict, due: timedelta, **more: Any) -> dict:
    return {
        "_id": cid,
        "agency": agency,
        "state": more.pop("state", "in_progress"),
        "received_at": T0,
        "deadlines": {"answer": T0 + due, "first_response": T0 + due},
        "history": [_entry(T0, "received"), _entry(T0 + H / 6, "assigned"), *history],
        **more,
    }


def test_accountability_per_agency_and_official() -> None:
    docs = [
        _complaint(
            "A",
            "PUPR",
            _entry(T0 + H, "in_progress", "agency:budi", action="acknowledge"),
            _entry(T0 + 2 * H, "responded", "agency:budi", action="answer"),
            due=10 * H,
            state="responded",
        ),
        _complaint(
            "B",
            "PUPR",
            _entry(T0 + H, "in_progress", "agency:sari", action="acknowledge"),
            _entry(T0 + 2 * H, None, "agency:sari", action="note"),  # not counted
            _entry(T0 + 20 * H, "responded", "agency:budi", action="answer"),
            due=10 * H,
            state="responded",
        ),
        _complaint(
            "C",
            "PUPR",
            _entry(T0 + H, "in_progress", "agency:sari", action="acknowledge"),
            due=5 * H,
            officer="sari",
        ),
        _complaint("D", "PUPR", due=50 * H, state="assigned"),
        # Forwarded by DINKES's officer: counted for DINKES, held by PUPR now.
        _complaint(
            "E",
            "PUPR",
            _entry(T0 + H, "received", "agency:wati", action="forward"),
            due=50 * H,
            state="assigned",
        ),
        _complaint("R", "PUPR", due=H, state="rejected"),
    ]
    docs[4]["history"][-1]["reason"] = "DINKES: not ours"
    table = accountability(docs, T0 + 30 * H, {"wati": "DINKES"})
    total, officials = table["PUPR"]
    assert (total.received, total.acknowledged, total.answered) == (5, 3, 2)
    assert (total.answered_on_time, total.answered_late, total.open_breaches) == (1, 1, 1)
    assert total.median_hours_to_answer == 11.0  # 2 h and 20 h from receipt
    by_name = {row.official: row for row in officials}
    assert set(by_name) == {"budi", "sari"}
    budi, sari = by_name["budi"], by_name["sari"]
    assert (budi.acknowledged, budi.answered, budi.answered_on_time, budi.answered_late) == (
        1,
        2,
        1,
        1,
    )
    assert budi.received == 2 and budi.open_breaches == 0
    assert (sari.acknowledged, sari.answered, sari.open_breaches, sari.received) == (2, 0, 1, 2)
    dinkes_total, dinkes_officials = table["DINKES"]
    assert dinkes_total.forwarded == 1 and dinkes_total.received == 0
    assert [(r.official, r.forwarded) for r in dinkes_officials] == [("wati", 1)]


def test_overview_row_from_groups() -> None:
    groups = [
        {"_id": {"state": "assigned", "priority": "urgent"}, "n": 2},
        {"_id": {"state": "assigned", "priority": "normal"}, "n": 3},
        {"_id": {"state": "needs_info", "priority": "urgent"}, "n": 1},
        {"_id": {"state": "responded", "priority": "high"}, "n": 4},
        {"_id": {"state": "closed", "priority": "urgent"}, "n": 9},  # not open
    ]
    row = overview_rows("PUPR", groups, overdue=2)
    assert (row.open, row.overdue, row.urgent_unacknowledged, row.awaiting_citizen) == (
        10,
        2,
        2,
        1,
    )


def test_month_bounds_are_local_months() -> None:
    wita = ZoneInfo("Asia/Makassar")
    start, end = month_bounds("2026-12", wita)
    assert start == datetime(2026, 12, 1, tzinfo=wita) and end == datetime(2027, 1, 1, tzinfo=wita)
    for bad in ("2026-13", "2026-00", "december"):
        with pytest.raises(ValueError):
            month_bounds(bad, wita)


def test_open_agency_follows_the_state() -> None:
    assert open_agency({"agency": "PUPR", "state": "in_progress"}) == "PUPR"
    assert open_agency({"agency": "PUPR", "state": "closed"}) is None
    assert open_agency({"agency": None, "state": "triage"}) is None


def test_worklist_search_escapes_words_and_reads_tracking_ids() -> None:
    words = worklist_filters("Lampu (PJU) .*", None, T0)
    assert words == {
        "$and": [
            {"text": {"$regex": "Lampu", "$options": "i"}},
            {"text": {"$regex": r"\(PJU\)", "$options": "i"}},
            {"text": {"$regex": r"\.\*", "$options": "i"}},
        ]
    }
    assert worklist_filters(None, True, T0) == {"next_deadline": {"$lt": T0}}
    assert worklist_filters("", None, T0) == {}
