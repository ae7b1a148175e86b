"""The binding of an idempotency key to its submission: every field counts but the
receiving time, and the binding is keyed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.contracts import InboundWeb
from services.intake.inbound import submission_binding

KEY = b"k" * 32
SENT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def web(**changes: Any) -> InboundWeb:
    fields: dict[str, Any] = {
        "source": "web",
        "message_id": "form-1",
        "region": "banjar",
        "text": "Jalan berlubang di depan pasar Martapura",
        "name": "Siti",
        "phone": "+6281234500001",
        "email": "siti@example.org",
        "category": "jalan",
        "location": {"lat": -3.41, "lon": 114.85, "address": "Jl. A. Yani"},
        "anonymous": False,
        "confidential": False,
        "received_at": SENT,
    }
    return InboundWeb(**{**fields, **changes})


CHANGES: dict[str, dict[str, Any]] = {
    "source": {"source": "token:abc"},
    "message_id": {"message_id": "form-2"},
    "region": {"region": "tapin"},
    "text": {"text": "Jalan berlubang di depan pasar Martapura!"},
    "name": {"name": None},
    "phone": {"phone": "+6281234500002"},
    "phone format": {"phone": "081234500001"},
    "email": {"email": "SITI@example.org"},
    "category": {"category": None},
    "location": {"location": {"lat": -3.41, "lon": 114.86, "address": "Jl. A. Yani"}},
    "anonymous": {"anonymous": True},
    "confidential": {"confidential": True},
}


def test_the_same_submission_is_bound_alike_whenever_it_arrives() -> None:
    later = web(received_at=SENT + timedelta(minutes=5))
    assert submission_binding(web(), KEY) == submission_binding(later, KEY)


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_any_other_field_changes_the_binding(change: str) -> None:
    assert submission_binding(web(**CHANGES[change]), KEY) != submission_binding(web(), KEY)


def test_the_binding_is_keyed() -> None:
    assert submission_binding(web(), KEY) != submission_binding(web(), b"j" * 32)
