"""Only notify holds the private personal-data key.

The services run as real processes against the real nats-server and FerretDB,
as `make run` starts them. An attacker who takes over router, sla, intake or
the dead-letter watcher gets that process's environment: nothing in it opens a
phone number stored by notify, and the events on the bus carry none in clear.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio

from lapor.contracts import subjects
from lapor.runtime.pii import PiiCipher, PiiKeyError
from tests.e2e.helpers import Outbox, eventually, sms_payload
from tools.devstack import SERVICES, Stack

pytestmark = [pytest.mark.integration, pytest.mark.security]

SENDER = "+6281234507711"
# The number's own digits, whatever prefix (+62, 62, 0) a copy would carry.
NATIONAL = "81234507711"
WITHOUT_THE_KEY = ("router", "sla", "intake", "dlq")


@pytest.fixture(scope="module")
def services(own_servers: Stack) -> Iterator[Stack]:
    own_servers.start_services(SERVICES)
    yield own_servers


def environment_of(stack: Stack, name: str) -> dict[str, str]:
    """What the running process was started with, as an attacker inside it reads it."""
    process = stack.children[name].process
    assert process is not None and process.poll() is None, f"{name} is not running"
    with open(f"/proc/{process.pid}/environ", "rb") as fh:
        entries = fh.read().split(b"\0")
    pairs = (entry.decode("utf-8", "replace").partition("=") for entry in entries if entry)
    return {name: value for name, _, value in pairs}


def test_only_notify_runs_with_the_private_key(services: Stack) -> None:
    for name in WITHOUT_THE_KEY:
        env = environment_of(services, name)
        assert "LAPOR_PII_KEY" not in env, name
        assert "LAPOR_PII_OLD_KEYS" not in env, name
        assert env.get("LAPOR_PII_PUBLIC_KEY"), name
    assert environment_of(services, "notify").get("LAPOR_PII_KEY")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def answered(services: Stack, own_nc: Any) -> dict[str, Any]:
    """One SMS complaint, answered by notify: it could read the sealed number."""
    outbox = await Outbox().attach(own_nc)
    try:
        text = "BANJAR lampu jalan mati di depan sekolah dasar"
        await own_nc.jetstream().publish(
            subjects.INBOUND_SMS, json.dumps(sms_payload(SENDER, text)).encode()
        )
        [reply, *_] = await eventually(lambda: _now(outbox.to(SENDER)), timeout=60)
    finally:
        await outbox.detach()
    return reply


async def _now(value: Any) -> Any:
    return value


async def test_a_received_event_in_the_stream_carries_no_plain_number(
    answered: dict[str, Any], own_nc: Any
) -> None:
    js = own_nc.jetstream()
    event = await js.get_last_msg("LAPOR_EVENTS", subjects.COMPLAINT_RECEIVED)
    received = json.loads(event.data)
    assert received["complaint_id"] == answered["complaint_id"]
    assert NATIONAL not in event.data.decode()
    assert received["reply_to_sealed"].startswith("pii2.")


async def test_routers_environment_opens_none_of_notifys_contacts(
    services: Stack, answered: dict[str, Any], own_mongo: Any
) -> None:
    complaint_id = answered["complaint_id"]
    contact = await own_mongo[services.mongo_db].notify_contacts.find_one({"_id": complaint_id})
    assert contact is not None and NATIONAL not in json.dumps(contact, default=str)

    def opens_with(value: str) -> bool:
        try:
            return PiiCipher(value).open(contact["sms"], complaint_id) == SENDER
        except PiiKeyError:
            return False

    # The test can tell: notify's own key opens the contact.
    assert opens_with(environment_of(services, "notify")["LAPOR_PII_KEY"])
    for name in WITHOUT_THE_KEY:
        env = environment_of(services, name)
        assert [var for var, value in env.items() if opens_with(value)] == [], name
