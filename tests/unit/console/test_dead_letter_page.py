"""The admins' dead-letter page against the in-memory services: list, replay, resolve."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.console.in_memory import InMemoryServices
from tests.unit.console.test_pages import (  # noqa: F401 (fixtures)
    client,
    cookie_key,
    csrf_of,
    log_in,
    services,
)


def dead_letter(record_id: str, **fields: object) -> dict[str, object]:
    return {
        "id": record_id,
        "reason": "max_deliveries",
        "service": "notify",
        "consumer": "notify-replies",
        "subject": "lapor.event.complaint.answered",
        "deliveries": 5,
        "error": "RuntimeError: gateway down",
        "stored_at": "2026-12-01T03:00:00+00:00",
        "replayed_at": None,
        "resolved_at": None,
        "payload": '{"reply_to": "+6281****"}',
        "payload_readable": True,
        **fields,
    }


@pytest.fixture
def with_dead_letters(services: InMemoryServices) -> InMemoryServices:  # noqa: F811
    services.dead_letter_records.extend(
        [
            dead_letter("LAPOR_EVENTS:7:notify-replies"),
            dead_letter("LAPOR_EVENTS:9:sla-timers", consumer="sla-timers"),
            dead_letter("LAPOR_EVENTS:3:router", resolved_at="2026-12-02T00:00:00+00:00"),
        ]
    )
    return services


def test_an_admin_lists_pending_dead_letters_and_replays_one(
    client: TestClient,  # noqa: F811
    with_dead_letters: InMemoryServices,
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    page = client.get("/admin/pesan-gagal")
    assert page.status_code == 200
    assert "LAPOR_EVENTS:7:notify-replies" in page.text and "gateway down" in page.text
    assert "LAPOR_EVENTS:3:router" not in page.text  # resolved: not pending

    answer = client.post(
        "/admin/pesan-gagal/kirim-ulang",
        data={"csrf": csrf_of(page.text), "id": "LAPOR_EVENTS:7:notify-replies"},
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/pesan-gagal?ok=kirim-ulang"
    assert with_dead_letters.dead_letter_records[0]["replayed_at"]
    after = client.get("/admin/pesan-gagal")
    assert "LAPOR_EVENTS:7:notify-replies" not in after.text
    assert "LAPOR_EVENTS:7" in client.get("/admin/pesan-gagal?status=settled").text


def test_an_admin_resolves_one_with_a_reason(
    client: TestClient,  # noqa: F811
    with_dead_letters: InMemoryServices,
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    page = client.get("/admin/pesan-gagal")
    answer = client.post(
        "/admin/pesan-gagal/selesaikan",
        data={"csrf": csrf_of(page.text), "id": "LAPOR_EVENTS:9:sla-timers", "reason": "uji"},
    )
    assert answer.status_code == 303
    record = with_dead_letters.dead_letter_records[1]
    assert record["resolution"] == "uji" and record["resolved_by"] == "admin"
    # Settled before: the watcher's refusal is shown on the page.
    again = client.post(
        "/admin/pesan-gagal/selesaikan",
        data={"csrf": csrf_of(page.text), "id": "LAPOR_EVENTS:9:sla-timers", "reason": "lagi"},
    )
    assert again.status_code == 409 and "settled before" in again.text


@pytest.mark.security
def test_a_dead_letter_form_without_its_csrf_token_is_refused(
    client: TestClient,  # noqa: F811
    with_dead_letters: InMemoryServices,
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    answer = client.post(
        "/admin/pesan-gagal/kirim-ulang", data={"id": "LAPOR_EVENTS:7:notify-replies"}
    )
    assert answer.status_code == 403
    assert with_dead_letters.dead_letter_records[0]["replayed_at"] is None


@pytest.mark.security
def test_an_officer_is_refused_the_dead_letter_page(
    client: TestClient,  # noqa: F811
    with_dead_letters: InMemoryServices,
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    assert client.get("/admin/pesan-gagal").status_code == 403
