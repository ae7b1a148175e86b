"""Domain events as the services announce them, for tests that feed a handler or a stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lapor.contracts import ComplaintRouted, Priority


def complaint_routed(
    complaint_id: str,
    *,
    round_: int = 0,
    at: datetime | None = None,
    received_at: datetime | None = None,
    **fields: Any,
) -> ComplaintRouted:
    """The router's decision of round `round_` for a Banjar complaint: PUPR, roads,
    normal priority, unless `fields` say otherwise."""
    at = at or datetime.now(UTC)
    values: dict[str, Any] = {
        "event_id": f"routed:{complaint_id}:{round_}",
        "occurred_at": at,
        "complaint_id": complaint_id,
        "region": "banjar",
        "received_at": received_at or at,
        "agency": "PUPR",
        "priority": Priority.NORMAL,
        "category": "jalan",
        "confidence": 0.9,
        "triage": False,
    }
    return ComplaintRouted(**(values | fields))
