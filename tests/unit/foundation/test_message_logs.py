"""Logs that follow a complaint: the broker's middleware binds a consumed message's
ids to every line written while it is handled and writes one line per message."""

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from faststream.nats import TestNatsBroker
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from lapor.runtime.broker import EventPublisher, create_broker, durable, message_ids
from lapor.runtime.logs import JsonFormatter, TextFormatter, bound_ids, log_ids
from lapor.runtime.settings import documentation_infra

RECEIVED = "lapor.event.complaint.received"
ROUTED = "lapor.event.complaint.routed"
COMMANDS = "lapor.command.complaint.reply"


class Lines(logging.Handler):
    """Every record as the JSON line a service would write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def handled(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"] == "lapor.messages"]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class Routed(BaseModel):
    event_id: str
    complaint_id: str


def _broker(dead_letters: list[Exception] | None = None) -> Any:
    async def on_invalid(_msg: Any, exc: Exception) -> None:
        (dead_letters if dead_letters is not None else []).append(exc)
        logging.getLogger("test.quarantine").warning("kept as dead letter")

    return create_broker(
        documentation_infra(), service="router", registry=CollectorRegistry(), on_invalid=on_invalid
    )


def test_ids_come_from_the_message_body() -> None:
    body = b'{"complaint_id": "LPR-1", "event_id": "ev-1", "command_id": "c-1", "text": "x"}'
    assert message_ids(body) == {"complaint_id": "LPR-1", "event_id": "ev-1", "command_id": "c-1"}
    # A citizen command's answer names the complaint by its tracking id.
    assert message_ids({"tracking_id": "LPR-2", "event_id": "e"}) == {
        "complaint_id": "LPR-2",
        "event_id": "e",
    }
    for junk in (b"not json", b"[1, 2]", b"\xff\xfe", b'{"complaint_id": 7}', b"[" * 100_000):
        assert message_ids(junk) == {}


async def test_every_line_of_a_handled_message_carries_its_ids(lines: Lines) -> None:
    broker = _broker()
    handler_log = logging.getLogger("test.handler")

    @durable(broker, RECEIVED, "router-received")
    async def handle(body: dict[str, Any]) -> None:
        handler_log.info("routing")

    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(
            {"event_id": "ev-1", "complaint_id": "LPR-AAAA-0001", "text": "+6281234567890"},
            RECEIVED,
        )
    routing = next(line for line in lines.lines if line["msg"] == "routing")
    assert routing["complaint_id"] == "LPR-AAAA-0001"
    assert routing["event_id"] == "ev-1"
    [done] = lines.handled()
    assert done["level"] == "info"
    assert done["outcome"] == "acked"
    assert done["subject"] == RECEIVED
    assert done["complaint_id"] == "LPR-AAAA-0001"
    assert isinstance(done["duration_ms"], float)
    assert "delivery" not in done  # the in-memory broker has no JetStream metadata
    assert "6281234567890" not in json.dumps(lines.lines)
    assert bound_ids() == {}


async def test_a_complaint_the_handler_creates_is_bound_from_what_it_publishes(
    lines: Lines,
) -> None:
    broker = _broker()
    routed = EventPublisher(broker, ROUTED, Routed, "routed")

    @durable(broker, "lapor.inbound.sms", "intake-sms")
    async def handle(body: dict[str, Any]) -> None:
        await routed.publish(Routed(event_id="ev-9", complaint_id="LPR-NEW-0009"), "ev-9")
        logging.getLogger("test.handler").info("after publishing")

    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish({"gateway_id": "gw-1", "text": "BANJAR"}, "lapor.inbound.sms")
    after = next(line for line in lines.lines if line["msg"] == "after publishing")
    assert after["complaint_id"] == "LPR-NEW-0009"
    # The published event's id is not the consumed message's.
    assert "event_id" not in after
    # (The in-memory broker also hands the published event to the publisher's mock.)
    [done] = [line for line in lines.handled() if line["subject"] == "lapor.inbound.sms"]
    assert done["complaint_id"] == "LPR-NEW-0009"
    assert bound_ids() == {}


async def test_failures_and_contract_violations_say_so(lines: Lines) -> None:
    dead: list[Exception] = []
    broker = _broker(dead)

    class Command(BaseModel):
        command_id: str
        complaint_id: str
        text: str

    @durable(broker, COMMANDS, "intake-commands")
    async def handle(command: Command) -> None:
        raise RuntimeError("database down")

    async with TestNatsBroker(broker) as test_broker:
        with pytest.raises(RuntimeError):
            await test_broker.publish(
                {"command_id": "cmd-1", "complaint_id": "LPR-3", "text": "x"}, COMMANDS
            )
        await test_broker.publish({"command_id": "cmd-2", "complaint_id": "LPR-4"}, COMMANDS)
    failed, invalid = lines.handled()
    assert (failed["outcome"], failed["error"], failed["level"]) == (
        "failed",
        "RuntimeError",
        "warning",
    )
    assert failed["command_id"] == "cmd-1" and failed["complaint_id"] == "LPR-3"
    assert "database down" not in failed["msg"]
    assert invalid["outcome"] == "dead_letter" and invalid["command_id"] == "cmd-2"
    assert len(dead) == 1
    # The quarantine's own line is written inside the message's binding.
    kept = next(line for line in lines.lines if line["logger"] == "test.quarantine")
    assert kept["command_id"] == "cmd-2"


def test_bound_ids_reach_text_lines_too_and_stay_masked() -> None:
    number = ("081234567890",)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sms from %s", number, None)
    with log_ids(complaint_id="LPR-5", event_id="ev-5"):
        text = TextFormatter("intake").format(record)
        line = json.loads(JsonFormatter("intake").format(record))
    assert text.endswith("complaint_id=LPR-5 event_id=ev-5")
    assert "4567890" not in text
    assert (line["complaint_id"], line["event_id"]) == ("LPR-5", "ev-5")
    assert "complaint_id" not in json.loads(JsonFormatter("intake").format(record))


def test_each_way_a_handling_ends_has_its_outcome(caplog: pytest.LogCaptureFixture) -> None:
    from faststream.exceptions import AckMessage, NackMessage, RejectMessage

    from lapor.runtime.handling import MAX_DELIVER, _failure_outcome

    delayed = NackMessage(delay=30.0)
    delayed.__cause__ = ConnectionError("no answer for +6281234567890")
    outcomes = {
        "ack": _failure_outcome(AckMessage(), 1),
        "delayed": _failure_outcome(delayed, 2),
        "plain nack": _failure_outcome(NackMessage(), 2),
        "reject": _failure_outcome(RejectMessage(), 1),
        "early failure": _failure_outcome(RuntimeError("x"), MAX_DELIVER - 1),
        "last failure": _failure_outcome(RuntimeError("x"), MAX_DELIVER),
    }
    assert {case: (o.name, o.error, o.level) for case, o in outcomes.items()} == {
        "ack": ("acked", None, logging.INFO),
        "delayed": ("retry", "ConnectionError", logging.WARNING),
        "plain nack": ("retry", None, logging.WARNING),
        "reject": ("rejected", None, logging.WARNING),
        "early failure": ("retry", "RuntimeError", logging.WARNING),
        "last failure": ("failed", "RuntimeError", logging.WARNING),
    }
    [retried] = [r.getMessage() for r in caplog.records if "retried in" in r.getMessage()]
    assert retried.startswith("attempt 2 failed (ConnectionError: ")
    assert retried.endswith("retried in 30 s")
    assert "6281234567890" not in retried
