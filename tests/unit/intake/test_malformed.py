"""Inbound payloads that break their contract: what can still be read from them, and
the runtime hook that hands them to the service after the dead letter is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from faststream.nats import TestNatsBroker
from pydantic import ValidationError

from lapor.contracts import InboundSms, subjects
from lapor.runtime.dead_letters import COLLECTION, NOTES
from lapor.runtime.service import ContractViolation, docs_runtime
from services.intake.sms import contract_fault, sender_in_payload

NUMBER = "+6281234567890"


@pytest.mark.parametrize(
    ("raw", "sender"),
    [
        (json.dumps({"from": NUMBER, "to": "1708"}).encode(), NUMBER),
        (json.dumps({"from": "0812 3456 7890"}).encode(), "0812 3456 7890"),
        # Cut off in the middle of the text: the sender field before it is intact.
        (b'{"from": "+6281234567890", "text": "BANJAR jalan rus', NUMBER),
        (b'{"gateway_id": "g1", "from" :"081234567890",', "081234567890"),
        (b"{this is not json", None),
        (b"\xff\xfe\x00garbage", None),
        (json.dumps({"from": 6281234567890}).encode(), None),
        (json.dumps(["+6281234567890"]).encode(), None),
        (b"", None),
    ],
)
def test_the_sender_is_read_from_a_broken_payload_when_it_is_intact(
    raw: bytes, sender: str | None
) -> None:
    assert sender_in_payload(raw) == sender


def test_a_web_payload_names_its_sender_in_phone() -> None:
    raw = json.dumps({"source": "wa", "phone": NUMBER}).encode()
    assert sender_in_payload(raw, "phone") == NUMBER
    assert sender_in_payload(raw) is None


def _validation_error(body: Any) -> ValidationError:
    # The shape FastStream raises: the handler's argument name comes first in `loc`.
    from pydantic import create_model

    model = create_model("Call", sms=(InboundSms, ...))
    try:
        model.model_validate({"sms": body})
    except ValidationError as exc:
        return exc
    raise AssertionError("valid")


def test_the_fault_names_fields_and_never_quotes_the_payload() -> None:
    fault = contract_fault(_validation_error({"from": NUMBER, "text": 5}))
    assert "text" in fault and "gateway_id" in fault and "received_at" in fault
    assert NUMBER not in fault and "81234567890" not in fault


def test_not_an_object_and_not_json_have_their_own_faults() -> None:
    assert "JSON object" in contract_fault(_validation_error("{broken"))
    assert "JSON" in contract_fault(json.JSONDecodeError("x", "doc", 0))


class _Collection:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def insert_one(self, doc: dict[str, Any]) -> None:
        if doc["_id"] in self.docs:
            raise type("Dup", (Exception,), {"code": 11000})()
        self.docs[doc["_id"]] = doc


async def test_the_service_hook_runs_after_the_dead_letter_for_its_subject_only() -> None:
    runtime = docs_runtime("intake")
    dead_letters = _Collection()
    db = {COLLECTION: dead_letters, NOTES: _Collection()}
    runtime.db.set(db)  # type: ignore[arg-type]
    seen: list[ContractViolation] = []

    async def on_violation(violation: ContractViolation) -> None:
        assert violation.dead_letter_id in dead_letters.docs  # kept before the hook runs
        seen.append(violation)

    runtime.on_contract_violation(subjects.INBOUND_SMS, on_violation)

    @runtime.broker.subscriber(subjects.INBOUND_SMS)
    async def on_sms(sms: InboundSms) -> None:
        raise AssertionError("never valid here")

    @runtime.broker.subscriber(subjects.inbound_partner("whatsapp"))
    async def on_web(sms: InboundSms) -> None:
        raise AssertionError("never valid here")

    async with TestNatsBroker(runtime.broker) as broker:
        await broker.publish(b'{"from": "+6281234567890"', subjects.INBOUND_SMS)
        await broker.publish(b"{}", subjects.inbound_partner("whatsapp"))

    assert len(dead_letters.docs) == 2
    assert [v.subject for v in seen] == [subjects.INBOUND_SMS]
    assert seen[0].payload == b'{"from": "+6281234567890"'
    assert isinstance(seen[0].error, ValidationError)
