"""What the servers hold after the services started: the declared durability settings.

The four services and the dead-letter watcher run as processes under their own
NATS users; the streams and durable consumers they declared are then read back
from the real nats-server and compared with lapor/runtime/broker.py: file
storage, the duplicate window, the retention, `max_deliver`, the backoff and
the ack wait the server derives from it. A release that changes a consumer's
settings takes effect on the next start (through the filter-checked create
subject, the only one a service may use); a stream an operator changed is kept.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from nats.js.api import AckPolicy, DeliverPolicy, StorageType

from lapor.contracts import subjects
from lapor.runtime.broker import (
    BACKOFF_S,
    DUPLICATE_WINDOW_S,
    MAX_DELIVER,
    STREAM_MAX_AGE_S,
)
from services.deadletters import domain as dead_letters
from tools.devstack import SERVICES, Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DB = "lapor_jetstream_config"


@pytest.fixture(scope="module")
def stack(own_servers: Stack) -> Iterator[Stack]:
    own_servers.mongo_db = DB
    own_servers.start_services(SERVICES)
    yield own_servers


def declared_consumers() -> list[tuple[str, str, str]]:
    """(stream, consumer, filter subject) of every durable in the services' wiring."""
    found = []
    for service in SERVICES:
        broker = importlib.import_module(f"services.{service}.wiring").asyncapi().broker
        for sub in broker.subscribers:
            found.append((sub.stream.name, sub.config.durable_name, sub.config.filter_subject))
    return sorted(found)


@pytest.mark.parametrize("spec", subjects.STREAMS, ids=lambda spec: spec.name)
async def test_streams_are_on_file_storage_with_a_duplicate_window(
    stack: Stack, own_nc: Any, spec: subjects.StreamSpec
) -> None:
    config = (await own_nc.jetstream().stream_info(spec.name)).config

    assert config.subjects == list(spec.subjects)
    assert config.storage == StorageType.FILE
    assert config.duplicate_window == DUPLICATE_WINDOW_S
    assert config.max_age == STREAM_MAX_AGE_S
    assert config.num_replicas == 1


async def test_the_advisory_stream_keeps_what_the_watcher_has_not_stored(
    stack: Stack, own_nc: Any
) -> None:
    js = own_nc.jetstream()
    config = (await js.stream_info(dead_letters.ADVISORY_STREAM)).config
    watcher = (await js.consumer_info(dead_letters.ADVISORY_STREAM, dead_letters.WATCHER)).config

    assert config.storage == StorageType.FILE
    assert sorted(config.subjects or []) == sorted(dead_letters.ADVISORY_SUBJECTS)
    assert config.max_age == dead_letters.ADVISORY_MAX_AGE_S
    assert watcher.filter_subject == dead_letters.ADVISORY_FILTER
    assert watcher.ack_policy == AckPolicy.EXPLICIT


async def test_every_durable_consumer_has_the_declared_redelivery_policy(
    stack: Stack, own_nc: Any
) -> None:
    js = own_nc.jetstream()
    consumers = declared_consumers()
    assert len(consumers) >= 19  # intake 6, router 2, sla 2, notify 9

    for stream, durable, filter_subject in consumers:
        config = (await js.consumer_info(stream, durable)).config
        assert (config.name, config.durable_name) == (durable, durable)
        assert config.filter_subject == filter_subject, durable
        assert config.ack_policy == AckPolicy.EXPLICIT, durable
        assert config.deliver_policy == DeliverPolicy.ALL, durable
        assert config.max_deliver == MAX_DELIVER, durable
        assert config.backoff == BACKOFF_S, durable
        # The server waits backoff[0] for the first ack.
        assert config.ack_wait == BACKOFF_S[0], durable
        assert config.max_ack_pending == 1000, durable


def test_the_services_started_within_their_permissions(stack: Stack) -> None:
    # nats-server logs every refused publish or subscription ("Publish Violation").
    refused = [
        line
        for line in (stack.workdir / "logs" / "nats.log").read_text().splitlines()
        if "violation" in line.lower()
    ]
    assert refused == []
    for name in (*SERVICES, "dlq"):
        text = (stack.workdir / "logs" / f"{name}.log").read_text().lower()
        assert "permissions violation" not in text, name
        assert "differs from its declaration" not in text, name


async def test_a_restart_restores_a_changed_consumer_and_keeps_a_changed_stream(
    stack: Stack, own_nc: Any
) -> None:
    js = own_nc.jetstream()
    router = (await js.consumer_info("LAPOR_EVENTS", "router-received")).config
    # As an older release (or an operator) left them.
    await js.add_consumer("LAPOR_EVENTS", router.evolve(max_deliver=3, backoff=[5.0, 5.0]))
    events = (await js.stream_info("LAPOR_EVENTS")).config
    operators_max_age = 7 * 24 * 3600.0
    await js.update_stream(events.evolve(max_age=operators_max_age))
    log = stack.workdir / "logs" / "router.log"
    offset = log.stat().st_size

    stack.restart("router")

    restored = (await js.consumer_info("LAPOR_EVENTS", "router-received")).config
    assert restored.max_deliver == MAX_DELIVER and restored.backoff == BACKOFF_S
    kept = (await js.stream_info("LAPOR_EVENTS")).config
    assert kept.max_age == operators_max_age
    with log.open("rb") as fh:
        fh.seek(offset)
        started = fh.read().decode()
    assert "stream LAPOR_EVENTS differs from its declaration" in started
    assert f"max_age {operators_max_age!r} on the server" in started
    # Put back for whatever runs next on these servers.
    await js.update_stream(events)
