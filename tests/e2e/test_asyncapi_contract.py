"""An outside program submits a complaint knowing nothing but the committed AsyncAPI
document: it reads the subject, the login, the header and an example from the YAML,
checks its payload against the document's schema, and publishes with plain core
NATS under the login the document names for it (the SMS gateway's, a partner's).
The acknowledgement SMS comes back."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema_rs
import nats
import pytest
import yaml

from tests.e2e.helpers import Outbox, eventually
from tools.devstack import Stack

pytestmark = [pytest.mark.e2e]

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi" / "intake.yaml"


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[unquote(part)]
    return node


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    # The document is the root, so `#/components/schemas/...` references resolve in it.
    return jsonschema_rs.validator_for({**document, **schema}, validate_formats=True)


def _message(document: dict[str, Any], address: str) -> dict[str, Any]:
    channel = next(c for c in document["channels"].values() if c["address"] == address)
    (ref,) = [m["$ref"] for m in channel["messages"].values()]
    message: dict[str, Any] = _resolve(document, ref)
    return message


def _login(document: dict[str, Any]) -> dict[str, Any]:
    (server,) = document["servers"].values()
    (requirement,) = server["security"]
    scheme: dict[str, Any] = _resolve(document, requirement["$ref"])
    return scheme


# What the program fills in itself: its own ids and time, the citizen's number.
def _sms(example: dict[str, Any], number: str) -> tuple[dict[str, Any], str]:
    payload = copy.deepcopy(example)
    payload.update(
        {
            "from": number,
            "gateway_id": f"gw-{uuid.uuid4().hex}",
            "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return payload, payload["gateway_id"]


def _partner(example: dict[str, Any], number: str) -> tuple[dict[str, Any], str]:
    payload = copy.deepcopy(example)
    payload.update(
        {
            "phone": number,
            "message_id": f"wa-{uuid.uuid4().hex}",
            "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return payload, f"partner:whatsapp:{payload['message_id']}"


@pytest.mark.parametrize(
    ("address", "subject", "user", "fill", "number"),
    [
        ("lapor.inbound.sms", "lapor.inbound.sms", "gateway", _sms, "+6281234500771"),
        (
            "lapor.inbound.partner.*",
            "lapor.inbound.partner.whatsapp",
            "partner-whatsapp",
            _partner,
            "+6281234500772",
        ),
    ],
)
async def test_a_program_with_only_the_document_submits_a_complaint(
    stack: Stack, nc: Any, address: str, subject: str, user: str, fill: Any, number: str
) -> None:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    login = _login(document)
    assert login["type"] == "userPassword" and f"`{user.split('-')[0]}" in login["description"]
    message = _message(document, address)
    (example,) = message["examples"]
    payload_schema = _validator(document, message["payload"])
    header_schema = _validator(document, message["headers"])
    assert "Nats-Msg-Id" in message["headers"]["properties"]

    # The document's own example is valid, and so is the payload built from it.
    assert payload_schema.is_valid(example["payload"])
    assert header_schema.is_valid(example["headers"])
    payload, msg_id = fill(example["payload"], number)
    payload_schema.validate(payload)
    headers = {"Nats-Msg-Id": msg_id}
    header_schema.validate(headers)
    assert not payload_schema.is_valid({k: v for k, v in payload.items() if k != "text"})

    outbox = await Outbox().attach(nc)
    channel = await nats.connect(stack.nats_url_for(user), name="outside-program")
    try:
        await channel.publish(subject, json.dumps(payload).encode(), headers=headers)
        await channel.flush()
        replies = await eventually(lambda: _async(outbox.to(number)), timeout=60)
    finally:
        await channel.close()
        await outbox.detach()
    assert replies[0]["complaint_id"] in replies[0]["text"]  # the tracking id, by SMS


async def _async(value: Any) -> Any:
    return value
