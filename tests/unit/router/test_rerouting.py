"""Re-routing after "not ours": refused agencies are excluded, two refusals go to a person."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lapor.contracts import Priority
from lapor.contracts.commands import ComplaintForwarded
from services.router.domain import Router
from services.router.handlers import MAX_BOUNCES, _decided_again, _decided_by_admin

DATA = Path(__file__).resolve().parents[3] / "data" / "regions" / "banjar"
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load(DATA)


def forwarded(bounces: int, refused: list[str], **extra: object) -> ComplaintForwarded:
    return ComplaintForwarded(
        event_id="f", occurred_at=NOW, complaint_id="LPR-X", region="banjar",
        text="lampu jalan mati di jalan A Yani km 5", received_at=NOW, round=bounces,
        refused=refused, bounces=bounces, **extra,
    )  # fmt: skip


def test_first_refusal_routes_elsewhere_without_the_refusing_agency(router: Router) -> None:
    event = forwarded(1, ["DISHUB"])
    fields = _decided_again(event, router.decide(event.text, exclude=frozenset(event.refused)))
    assert fields["agency"] != "DISHUB"
    assert "DISHUB" not in fields["candidates"]
    assert fields["reasons"][0] == "refused by DISHUB"


def test_second_refusal_goes_to_triage_with_candidates(router: Router) -> None:
    event = forwarded(MAX_BOUNCES, ["DISHUB", "PUPR"], suggested_agency="PLN")
    fields = _decided_again(event, router.decide(event.text, exclude=frozenset(event.refused)))
    assert fields["triage"] is True and fields["agency"] is None
    assert fields["candidates"][0] == "PLN"
    assert any("2 refusals" in r for r in fields["reasons"])


def test_admin_decision_is_taken_as_given(router: Router) -> None:
    event = forwarded(
        2, ["DISHUB", "PUPR"], kind="triage_decision", decided_agency="PLN",
        decided_priority=Priority.HIGH, decided_by="admin:rina",
    )  # fmt: skip
    fields = _decided_by_admin(event, router.decide(event.text))
    assert fields is not None
    assert (fields["agency"], fields["priority"], fields["decided_by"]) == (
        "PLN", Priority.HIGH, "admin:rina",
    )  # fmt: skip
