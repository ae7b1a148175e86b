"""SMS pumping through the web form: a number given on the web, Open311 or a partner
channel must be a mobile number of a country the region allows (Indonesia unless
configured), and counts against the same per-number limit as the number's SMS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lapor.contracts import Channel, ComplaintReceived, InboundRejected, InboundWeb, RejectionReason
from lapor.regions import load_regions
from services.intake import usecases
from services.intake.guard import RateLimit
from services.intake.phones import phone_hash, sms_reachable
from services.intake.ports import IntakeDeps
from services.intake.usecases import SubmissionRejected
from tests.contacts import opened
from tests.unit.intake.fakes import PHONE_KEY, MemoryComplaints, intake_deps

NOW = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("number", "countries", "allowed"),
    [
        ("+6281234567890", {"ID"}, True),  # Telkomsel
        ("+6285712345678", {"ID"}, True),  # Indosat
        ("+62215551234", {"ID"}, False),  # Jakarta fixed line
        ("+625113312345", {"ID"}, False),  # Martapura fixed line
        ("+447400123456", {"ID"}, False),  # UK mobile
        ("+447400123456", {"ID", "GB"}, True),
        ("+60123456789", {"ID"}, False),  # Malaysian mobile
        ("+60123456789", {"MY"}, True),
        ("+19005551234", {"US"}, False),  # premium rate, even where the country is allowed
        ("+12015550123", {"US"}, True),  # fixed line or mobile: cannot be told apart
        ("+881612345678", {"ID"}, False),  # satellite
        ("0812345", {"ID"}, False),
        ("nonsense", {"ID"}, False),
    ],
)
def test_only_mobile_numbers_of_allowed_countries_may_be_texted(
    number: str, countries: set[str], allowed: bool
) -> None:
    assert sms_reachable(number, frozenset(countries)) is allowed


def test_a_region_allows_indonesia_unless_configured(tmp_path: Path) -> None:
    assert load_regions(ROOT / "data")["banjar"].allowed_sms_countries == ["ID"]
    region = tmp_path / "regions" / "tapin"
    region.mkdir(parents=True)
    region.joinpath("region.yaml").write_text(
        "name: Tapin\ntimezone: Asia/Makassar\nkeywords: [TAPIN]\n", encoding="utf-8"
    )
    assert load_regions(tmp_path)["tapin"].allowed_sms_countries == ["ID"]
    region.joinpath("region.yaml").write_text(
        "name: Tapin\ntimezone: Asia/Makassar\nkeywords: [TAPIN]\n"
        "allowed_sms_countries: [id, my]\n",
        encoding="utf-8",
    )
    assert load_regions(tmp_path)["tapin"].allowed_sms_countries == ["ID", "MY"]
    region.joinpath("region.yaml").write_text(
        "name: Tapin\ntimezone: Asia/Makassar\nkeywords: [TAPIN]\nallowed_sms_countries: [XX]\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="allowed_sms_countries"):
        load_regions(tmp_path)


def deps(repo: MemoryComplaints, **fields: Any) -> IntakeDeps:
    return intake_deps(repo, clock=lambda: NOW, **fields)


def submission(n: int = 1, **fields: Any) -> InboundWeb:
    given: dict[str, Any] = {
        "source": "web",
        "message_id": f"m-{n}",
        "region": "banjar",
        "text": f"lampu jalan mati di depan sekolah nomor {n}",
        "received_at": NOW,
    }
    return InboundWeb(**(given | fields))


@pytest.mark.parametrize("channel", [Channel.WEB, Channel.OPEN311])
@pytest.mark.parametrize("phone", ["+447400123456", "021 555 1234", "+19005551234"])
async def test_a_number_that_is_not_an_indonesian_mobile_is_refused_and_not_texted(
    channel: Channel, phone: str
) -> None:
    repo = MemoryComplaints()
    with pytest.raises(SubmissionRejected) as refused:
        await usecases.accept_submission(submission(phone=phone), channel, deps(repo))

    assert refused.value.reason is RejectionReason.PHONE_NOT_ALLOWED
    assert "ID" in refused.value.detail and phone not in refused.value.detail
    assert not repo.complaints
    [record] = repo.rejections.values()
    assert record["reason"] == "phone_not_allowed" and record["answered"] is False
    assert "phone" not in record["payload"]
    [event] = repo.announced(InboundRejected)
    assert event.reply_to_sealed is None  # nothing for notify to text


async def test_a_region_that_allows_a_country_accepts_its_mobile_numbers() -> None:
    repo = MemoryComplaints()
    allowed = deps(repo, sms_countries={"banjar": frozenset({"ID", "GB"})})
    stored = await usecases.accept_submission(
        submission(phone="+447400123456"), Channel.WEB, allowed
    )
    assert stored["_id"] and not repo.rejections
    [received] = repo.announced(ComplaintReceived)
    assert opened(received, "reply_to_sealed") == "+447400123456"


async def test_a_number_counts_against_one_limit_across_channels() -> None:
    """Its SMS and its web, Open311 and partner submissions fill the same window."""
    repo = MemoryComplaints()
    limited = deps(repo, rate_limit=RateLimit(per_hour=3, per_day=30))
    phone = "+6281234567890"
    sender = phone_hash(phone, PHONE_KEY)
    # Two SMS of this number earlier in the hour.
    for n in range(2):
        at = NOW - timedelta(minutes=10 + n)
        await repo.record_sender_message(f"sms:gw-{n}", sender, at)

    await usecases.accept_submission(submission(1, phone=phone), Channel.WEB, limited)
    for n, channel in ((2, Channel.OPEN311), (3, Channel.WEB)):
        with pytest.raises(SubmissionRejected) as refused:
            await usecases.accept_submission(
                submission(n, phone="0812-3456-7890"), channel, limited
            )
        assert refused.value.reason is RejectionReason.RATE_LIMITED

    assert len(repo.complaints) == 1
    assert [r["reason"] for r in repo.rejections.values()] == ["rate_limited", "rate_limited"]
    assert all(e.reply_to_sealed is None for e in repo.announced(InboundRejected))
    # Another number is not affected.
    await usecases.accept_submission(submission(4, phone="+6281234567891"), Channel.WEB, limited)
    assert len(repo.complaints) == 2


async def test_a_resent_submission_is_not_counted_twice() -> None:
    repo = MemoryComplaints()
    limited = deps(repo, rate_limit=RateLimit(per_hour=1, per_day=30))
    given = submission(1, phone="+6281234567890")
    first = await usecases.accept_submission(given, Channel.WEB, limited)
    again = await usecases.accept_submission(given, Channel.WEB, limited)
    assert again["_id"] == first["_id"] and len(repo.sender_messages) == 1
