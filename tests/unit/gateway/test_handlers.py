"""The connector's use cases against the in-memory Kannel and repository."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from lapor.contracts.outbound import OutboundSms
from services.gateway import domain, handlers
from services.gateway.kannel import NO_ANSWER, FakeKannel, KannelRefused, KannelUnavailable
from services.gateway.metrics import GatewayMetrics
from services.gateway.repository import InMemorySubmissions

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


class Bus:
    """A publisher that drops a repeated message id, as JetStream does."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.down = False

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        if self.down:
            raise ConnectionError("bus down")
        if msg_id in self.stored:
            return False
        self.stored[msg_id] = message.model_dump(mode="json", by_alias=True)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _deps() -> tuple[handlers.GatewayDeps, FakeKannel, Bus, Bus, Clock]:
    kannel, inbound, receipts, clock = FakeKannel(), Bus(), Bus(), Clock()
    deps = handlers.GatewayDeps(
        kannel=kannel,
        submissions=InMemorySubmissions(),
        inbound=inbound,
        receipts=receipts,
        metrics=GatewayMetrics(CollectorRegistry()),
        pace=handlers.SendPace(1000.0),
        login=domain.SendSmsLogin("lapor", "pw", "1708", "http://gw", "tok"),
        unanswered_wait=timedelta(minutes=5),
        clock=clock,
    )
    return deps, kannel, inbound, receipts, clock


def _sms(nid: str = "n-1", text: str = "Laporan diterima") -> OutboundSms:
    return OutboundSms(to="+6281234567890", text=text, notification_id=nid)


def _value(deps: handlers.GatewayDeps, name: str, **labels: str) -> float:
    return float(deps.metrics.registry.get_sample_value(name, labels) or 0.0)


async def test_a_redelivered_sms_is_submitted_once() -> None:
    deps, kannel, *_ = _deps()
    await handlers.submit_sms(_sms(), deps)
    await handlers.submit_sms(_sms(), deps)
    assert len(kannel.sent) == 1
    assert kannel.sent[0]["coding"] == "0"
    assert _value(deps, "lapor_gateway_sms_submitted_total") == 1


async def test_kannel_down_means_retry_later_and_no_mark() -> None:
    deps, kannel, *_ = _deps()
    kannel.failure = KannelUnavailable("unreachable", "ConnectError")
    with pytest.raises(KannelUnavailable):
        await handlers.submit_sms(_sms(), deps)
    kannel.failure = None
    await handlers.submit_sms(_sms(), deps)
    assert len(kannel.sent) == 1
    assert _value(deps, "lapor_gateway_kannel_errors_total", kind="unreachable") == 1


async def test_unanswered_call_waits_for_a_report_instead_of_sending_twice() -> None:
    deps, kannel, _, receipts, clock = _deps()
    kannel.failure = KannelUnavailable(NO_ANSWER, "RemoteProtocolError")
    with pytest.raises(KannelUnavailable):
        await handlers.submit_sms(_sms(), deps)
    kannel.failure = None
    clock.now += timedelta(seconds=30)
    with pytest.raises(KannelUnavailable, match="awaiting_report") as waiting:
        await handlers.submit_sms(_sms(), deps)
    # Back when the 5-minute wait for a report ends, not at the backoff's next step.
    assert waiting.value.retry_in_s == 270.0
    # Kannel had it after all: its report arrives, the redelivery sends nothing.
    await handlers.record_delivery_report("n-1", domain.DLR_SMSC_ACK, "ACK/", deps)
    await handlers.submit_sms(_sms(), deps)
    assert kannel.sent == []
    assert receipts.stored == {}


async def test_unanswered_call_without_a_report_is_sent_again_after_the_wait() -> None:
    deps, kannel, _, _, clock = _deps()
    kannel.failure = KannelUnavailable(NO_ANSWER, "ReadTimeout")
    with pytest.raises(KannelUnavailable):
        await handlers.submit_sms(_sms(), deps)
    kannel.failure = None
    clock.now += timedelta(minutes=6)
    await handlers.submit_sms(_sms(), deps)
    assert len(kannel.sent) == 1


async def test_a_refused_sms_fails_with_one_receipt() -> None:
    deps, kannel, _, receipts, _ = _deps()
    kannel.failure = KannelRefused("HTTP 400 Missing receiver number")
    await handlers.submit_sms(_sms(), deps)
    kannel.failure = None
    await handlers.submit_sms(_sms(), deps)
    assert kannel.sent == []
    [(msg_id, receipt)] = receipts.stored.items()
    assert msg_id == "receipt:n-1:failed"
    assert receipt["status"] == "failed"
    assert "Missing receiver" in receipt["error"]


async def test_reports_become_one_receipt_each_outcome() -> None:
    deps, _, _, receipts, _ = _deps()
    await handlers.submit_sms(_sms(), deps)
    await handlers.record_delivery_report("n-1", domain.DLR_SMSC_ACK, "ACK/", deps)
    assert receipts.stored == {}
    for _ in range(2):  # Kannel retries a callback it got no answer to
        await handlers.record_delivery_report("n-1", domain.DLR_DELIVERED, "", deps)
    assert list(receipts.stored) == ["receipt:n-1:delivered"]
    assert _value(deps, "lapor_gateway_sms_delivered_total") == 1


async def test_an_expired_sms_says_so_in_the_receipt() -> None:
    deps, _, _, receipts, _ = _deps()
    await handlers.record_delivery_report("n-2", 2, "stat:EXPIRED err:000", deps)
    receipt = receipts.stored["receipt:n-2:expired"]
    assert receipt["status"] == "expired" and receipt["error"].startswith("expired")
    assert _value(deps, "lapor_gateway_sms_failed_total", reason="expired") == 1


async def test_a_received_sms_is_published_with_kannels_id() -> None:
    deps, _, inbound, _, _ = _deps()
    sms = domain.ReceivedSms("abc", "+6281234567890", "1708", "BANJAR jalan rusak", T0)
    await handlers.receive_sms(sms, "1708", deps)
    await handlers.receive_sms(sms, "1708", deps)
    [(msg_id, message)] = inbound.stored.items()
    assert msg_id == message["gateway_id"] == "kannel:abc"
    assert message["from"] == "+6281234567890"
    assert _value(deps, "lapor_gateway_sms_received_total", outcome="duplicate") == 1


async def test_the_link_gauges_follow_the_status_page() -> None:
    deps, kannel, *_ = _deps()
    kannel.status_xml = (
        "<gateway><smscs><smsc><id>operator</id><status>online 5s</status></smsc></smscs></gateway>"
    )
    await handlers.poll_status(deps)
    assert _value(deps, "lapor_gateway_smsc_up", smsc="operator") == 1
    assert _value(deps, "lapor_gateway_kannel_up") == 1
    kannel.failure = KannelUnavailable("unreachable", "ConnectError")
    await handlers.poll_status(deps)
    assert _value(deps, "lapor_gateway_kannel_up") == 0


async def test_the_send_rate_is_kept() -> None:
    ticks = [0.0]
    pace = handlers.SendPace(2.0, clock=lambda: ticks[0])
    await pace.wait()
    await pace.wait()
    assert pace._bucket.take(pace.KEY) == pytest.approx(0.5)
