"""A period [start, end) reads the same way everywhere it filters stored documents:
the report's complaints, breaches and hotspots and SLA's breach listing."""

from datetime import UTC, datetime

from lapor.report.fetch import breach_filter, complaint_filter
from lapor.runtime.db import half_open
from services.sla.breach_store import breach_query

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_period_includes_its_start_and_excludes_its_end() -> None:
    assert half_open(START, END) == {"$gte": START, "$lt": END}
    assert half_open(START, None) == {"$gte": START}
    assert half_open(None, END) == {"$lt": END}
    assert half_open(None, None) is None


def test_the_report_filters_by_region_and_its_own_time_field() -> None:
    assert complaint_filter("banjar", START, END) == {
        "region": "banjar",
        "received_at": {"$gte": START, "$lt": END},
    }
    assert breach_filter(None, None, END) == {"breached_at": {"$lt": END}}
    assert complaint_filter(None, None, None) == {}


def test_the_breach_listing_filters_on_the_deadline() -> None:
    query = breach_query(agency="dinas-pu", region=None, start=START, end=END, clock="answer")
    assert query == {
        "agency": "dinas-pu",
        "clock": "answer",
        "due_at": {"$gte": START, "$lt": END},
    }
    assert breach_query(agency=None, region="banjar", start=None, end=None) == {"region": "banjar"}
