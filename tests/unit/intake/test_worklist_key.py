"""`worklist_key` sorts, as one string, exactly like the worklist's stored fields:
urgent first, a deadline before none, the nearest deadline, the oldest, the id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.intake.worklist import WORKLIST_ORDER, worklist_key
from services.intake.worklist_api import worklist_count_bound

T0 = datetime(2026, 11, 2, 1, 0)
_instants = st.integers(-(10**10), 10**10).map(lambda ms: T0 + timedelta(milliseconds=ms))
_times = st.one_of(st.none(), _instants)


@st.composite
def _entries(draw: st.DrawFn) -> dict[str, Any]:
    due = draw(_times)
    received = draw(_instants)
    # Sometimes aware, in another zone: the key compares instants, as the database does.
    if draw(st.booleans()):
        received = received.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=8)))
    flag = draw(st.sampled_from([None, 0, 1, 1 if due is not None else 0]))
    return {
        "priority_rank": draw(st.sampled_from([None, 0, 1, 2])),
        "has_next_deadline": flag,
        "next_deadline": due,
        "received_at": received,
    }


def _naive(value: Any) -> Any:
    if not isinstance(value, datetime) or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _field_order(entry: dict[str, Any]) -> tuple[Any, ...]:
    """`WORKLIST_ORDER` as the database applies it: a missing value sorts lowest, a
    descending field reversed, dates to the millisecond."""
    parts: list[Any] = []
    for field, direction in WORKLIST_ORDER:
        value = _naive(entry.get(field))
        if isinstance(value, datetime):
            value = value.replace(microsecond=value.microsecond // 1000 * 1000)
        rank = (0, 0) if value is None else (1, value)
        if direction < 0:
            rank = (-rank[0], -rank[1]) if value is not None else (0, 0)
        parts.append(rank)
    return tuple(parts)


@given(st.lists(_entries(), min_size=2, max_size=30))
def test_the_key_sorts_like_the_stored_fields(entries: list[dict[str, Any]]) -> None:
    for i, entry in enumerate(entries):
        entry["_id"] = f"LPR-{i}"  # "LPR-1" before "LPR-10": ids of any length
    by_key = sorted(entries, key=lambda e: worklist_key(e).encode())
    by_fields = sorted(entries, key=_field_order)
    assert [e["_id"] for e in by_key] == [e["_id"] for e in by_fields]


@given(_entries(), st.from_regex(r"LPR-[0-9A-Z]{4}-[0-9A-Z]{5}", fullmatch=True))
def test_the_key_has_no_character_our_ferretdb_build_cannot_order(
    entry: dict[str, Any], tracking_id: str
) -> None:
    key = worklist_key(entry | {"_id": tracking_id})
    assert key.isascii() and not set(key) & {" ", "!", '"', "\\"}


def test_urgent_first_then_nearest_deadline_then_none() -> None:
    urgent_none = {"_id": "A", "priority_rank": 0, "has_next_deadline": 0, "received_at": T0}
    urgent_soon = {
        "_id": "B",
        "priority_rank": 0,
        "has_next_deadline": 1,
        "next_deadline": T0 + timedelta(days=3),
        "received_at": T0 + timedelta(hours=1),
    }
    normal_late = {
        "_id": "C",
        "priority_rank": 2,
        "has_next_deadline": 1,
        "next_deadline": T0 - timedelta(days=1),
        "received_at": T0,
    }
    keys = sorted([normal_late, urgent_none, urgent_soon], key=worklist_key)
    assert [e["_id"] for e in keys] == ["B", "A", "C"]


def test_a_bounded_count_reaches_past_the_page() -> None:
    assert [worklist_count_bound(n) for n in (25, 99, 100, 175)] == [100, 100, 200, 200]
