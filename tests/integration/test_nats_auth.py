"""NATS authorisation: every user may do what its job needs and nothing else.

Each user of the generated config (services, partner systems, the gateway
connector, the dead-letter watcher) tries publishes and subscriptions it must
not make; the server refuses every one (nats-py reports a permissions
violation to the error callback), while the allowed action succeeds. The file
docker compose uses must be the rendering of the same code.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
import yaml
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from lapor.contracts import subjects
from lapor.runtime.broker import EventPublisher, create_broker, durable, inbox_prefix, stream_for
from lapor.runtime.http import broker_running
from lapor.runtime.settings import InfraSettings
from tests.e2e.helpers import eventually
from tools.devstack import (
    AUTH_CONF,
    GATEWAY_CONSUMER,
    NATS_STORE_KEY_ENV,
    ROOT,
    SERVICES,
    Stack,
    nats_server_bin,
    nats_users,
    render_auth_conf,
    service_user,
)

pytestmark = [pytest.mark.integration]

OWN_EVENT = {
    "intake": "lapor.event.complaint.received",
    "router": "lapor.event.complaint.routed",
    "sla": "lapor.event.complaint.deadlines",
    "notify": "lapor.outbound.sms",
    "hotspots": "lapor.event.hotspot.changed",
}
# Never for a service: forging input, commands, other services' decisions, or
# destroying and reading stored messages behind the consumers' back.
SERVICE_FORBIDDEN_PUBLISH = [
    "lapor.inbound.sms",
    "lapor.inbound.partner.whatsapp",
    "lapor.command.complaint.close",
    "$JS.API.STREAM.DELETE.LAPOR_EVENTS",
    "$JS.API.STREAM.PURGE.LAPOR_EVENTS",
    "$JS.API.STREAM.MSG.DELETE.LAPOR_EVENTS",
    "$JS.API.STREAM.MSG.GET.LAPOR_INBOUND",
    "$JS.API.DIRECT.GET.LAPOR_INBOUND",
    "$JS.API.STREAM.CREATE.ANOTHER_STREAM",
    "$JS.API.STREAM.SNAPSHOT.LAPOR_EVENTS",
    "$JS.API.CONSUMER.DELETE.LAPOR_EVENTS.router-received",
    "$JS.API.CONSUMER.CREATE.LAPOR_EVENTS.eavesdrop.lapor.event.>",
    "$JS.API.CONSUMER.CREATE.LAPOR_EVENTS",
    # Changing a stream's limits or subjects is the admin's.
    "$JS.API.STREAM.UPDATE.LAPOR_EVENTS",
    "$JS.API.STREAM.UPDATE.LAPOR_INBOUND",
    "$JS.API.STREAM.UPDATE.LAPOR_OUTBOUND",
    "$JS.API.STREAM.UPDATE.LAPOR_COMMANDS",
    # The gateway's consumer of outgoing SMS.
    "$JS.API.CONSUMER.MSG.NEXT.LAPOR_OUTBOUND.gateway-sms",
]
SERVICE_FORBIDDEN_SUBSCRIBE = [
    ">",
    "lapor.>",
    "lapor.inbound.sms",
    "lapor.event.complaint.received",
    "lapor.outbound.sms",
    "$JS.EVENT.>",
    # Replies are per login: the shared root and every other login's inbox.
    "_INBOX.>",
    "_INBOX.*.>",
    "_INBOX.partner-whatsapp.>",
    "_INBOX.gateway.>",
    "_INBOX.dlq.>",
]


def _forbidden_subscribe(service: str) -> list[str]:
    others = [f"{inbox_prefix(name)}.>" for name in SERVICES if name != service]
    return [*SERVICE_FORBIDDEN_SUBSCRIBE, *others, f"{inbox_prefix(service)}x.>"]


# A consumer of each service: (stream, name, filter).
CONSUMER_OF = {
    "intake": ("LAPOR_INBOUND", "intake-sms", "lapor.inbound.sms"),
    "router": ("LAPOR_EVENTS", "router-received", "lapor.event.complaint.received"),
    "sla": ("LAPOR_EVENTS", "sla-routed", "lapor.event.complaint.routed"),
    "notify": ("LAPOR_EVENTS", "notify-received", "lapor.event.complaint.received"),
    "hotspots": ("LAPOR_EVENTS", "hotspots-routed", "lapor.event.complaint.routed"),
}


def _forbidden_publish(service: str) -> list[str]:
    others = [subject for name, subject in OWN_EVENT.items() if name != service]
    stream, foreign, foreign_filter = CONSUMER_OF["router" if service != "router" else "intake"]
    own_stream, own, _own_filter = CONSUMER_OF[service]
    return [
        *SERVICE_FORBIDDEN_PUBLISH,
        *others,
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{foreign}",
        f"$JS.ACK.{stream}.{foreign}.1.1.1.1.1",
        # Another service's consumer: neither its own filter nor a wider one, and
        # not through the legacy create subject, which the server does not check.
        f"$JS.API.CONSUMER.CREATE.{stream}.{foreign}.{foreign_filter}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{foreign}.lapor.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{foreign}",
        f"$JS.API.CONSUMER.INFO.{stream}.{foreign}",
        # Its own consumer, widened to everything on its stream.
        f"$JS.API.CONSUMER.CREATE.{own_stream}.{own}.lapor.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{own_stream}.{own}",
    ]


class Client:
    """One login; records the permission violations the server reports."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None

    async def connect(self, url: str, inbox_prefix: str = "_INBOX") -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        self.nc = await nats.connect(
            url, error_cb=on_error, inbox_prefix=inbox_prefix, allow_reconnect=False
        )
        return self

    async def _refused(self, action: str, subject: str, timeout: float = 5.0) -> bool:
        """Every caller expects the server to refuse: wait for its error (which may
        come after a flush's PONG); one that never comes counts as let through."""
        wanted = f'permissions violation for {action} to "{subject.lower()}"'

        async def seen() -> bool:
            return any(wanted in error for error in self.errors)

        try:
            await eventually(seen, timeout=timeout, interval=0.01)
        except AssertionError:
            return False
        return True

    async def publish_refused(self, subject: str) -> bool:
        await self.nc.publish(subject, b"{}")
        return await self._refused("publish", subject)

    async def subscribe_refused(self, subject: str) -> bool:
        sub = await self.nc.subscribe(subject)
        refused = await self._refused("subscription", subject)
        await sub.unsubscribe()
        return refused

    async def unrefused(self, publish: list[str], subscribe: list[str]) -> list[str]:
        """The actions the server let through (expected: none)."""
        through = [f"pub {s}" for s in publish if not await self.publish_refused(s)]
        through += [f"sub {s}" for s in subscribe if not await self.subscribe_refused(s)]
        return through

    async def close(self) -> None:
        await self.nc.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def streams(own_servers: Stack, own_nc: Any) -> AsyncIterator[Stack]:
    js = own_nc.jetstream()
    for subject in ("lapor.inbound.sms", "lapor.event.x", "lapor.outbound.sms", "lapor.command.x"):
        stream = stream_for(subject)
        await js.add_stream(stream.config, subjects=list(stream.subjects))
    yield own_servers


async def _login(stack: Stack, user: str, inbox_prefix: str = "_INBOX") -> Client:
    return await Client().connect(stack.nats_url_for(user), inbox_prefix)


@pytest.mark.parametrize("service", SERVICES)
async def test_service_user_is_confined_to_its_own_subjects(
    streams: Stack, own_nc: Any, service: str
) -> None:
    client = await _login(streams, service, inbox_prefix(service))
    try:
        through = await client.unrefused(_forbidden_publish(service), _forbidden_subscribe(service))
        # Allowed: its own event, through JetStream (the PubAck comes to its inbox).
        ack = await client.nc.jetstream().publish(OWN_EVENT[service], b"{}", timeout=5)
    finally:
        await client.close()
    assert through == []
    assert ack.stream in ("LAPOR_EVENTS", "LAPOR_OUTBOUND")


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_cannot_change_streams_or_widen_consumers_through_the_api(
    streams: Stack, own_nc: Any, service: str
) -> None:
    """The JetStream API as a service calls it: its own consumer may be declared
    again (a release changing max_deliver), but not wider, not another
    service's, not through the unchecked legacy subject, and no stream changes."""
    admin = own_nc.jetstream()
    for stream_name, name, filter_subject in CONSUMER_OF.values():
        await _ensure_consumer(admin, stream_name, name, filter_subject)
    own_stream, own, own_filter = CONSUMER_OF[service]
    stream, foreign, _filter = CONSUMER_OF["router" if service != "router" else "intake"]
    events = stream_for("lapor.event.x")
    attempts: dict[str, Callable[[Any], Awaitable[Any]]] = {
        f"$JS.API.CONSUMER.CREATE.{own_stream}.{own}.lapor.>": lambda js: js.add_consumer(
            own_stream, _consumer(own, "lapor.>")
        ),
        f"$JS.API.CONSUMER.CREATE.{stream}.{foreign}.lapor.>": lambda js: js.add_consumer(
            stream, _consumer(foreign, "lapor.>")
        ),
        f"$JS.API.CONSUMER.DURABLE.CREATE.{own_stream}.{own}": lambda js: js.add_consumer(
            own_stream, _consumer(own, own_filter).evolve(name=None)
        ),
        "$JS.API.STREAM.UPDATE.LAPOR_EVENTS": lambda js: js.update_stream(
            events.config.evolve(subjects=["lapor.event.>", "lapor.x.>"], max_age=60.0)
        ),
    }
    client = await _login(streams, service, inbox_prefix(service))
    refused: dict[str, bool] = {}
    try:
        current = (await admin.consumer_info(own_stream, own)).config
        redeclared = current.evolve(name=own, durable_name=own, max_deliver=5)
        own_info = await client.nc.jetstream().add_consumer(own_stream, redeclared)
        quick = client.nc.jetstream(timeout=0.5)
        for subject, attempt in attempts.items():
            with pytest.raises(nats.errors.TimeoutError):
                await attempt(quick)
            refused[subject] = await client._refused("publish", subject)
    finally:
        await client.close()
    assert own_info.config.max_deliver == 5
    assert refused == dict.fromkeys(attempts, True)
    for stream_name, name, filter_subject in CONSUMER_OF.values():
        info = await admin.consumer_info(stream_name, name)
        assert info.config.filter_subject == filter_subject
    stored = await admin.stream_info("LAPOR_EVENTS")
    assert stored.config.subjects == ["lapor.event.>"]
    assert stored.config.max_age == events.config.max_age


def _consumer(
    name: str, filter_subject: str, deliver: DeliverPolicy = DeliverPolicy.ALL
) -> ConsumerConfig:
    # Deliver policy as the services declare theirs: it cannot change later.
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=deliver,
    )


async def _ensure_consumer(js: Any, stream: str, name: str, filter_subject: str) -> None:
    # Another test may have created it with the service's own settings already.
    try:
        await js.consumer_info(stream, name)
    except NotFoundError:
        await js.add_consumer(stream, _consumer(name, filter_subject))


@pytest.mark.parametrize(("partner", "other"), [("whatsapp", "sp4n"), ("sp4n", "whatsapp")])
async def test_a_partner_may_only_submit_on_its_own_subject(
    streams: Stack, partner: str, other: str
) -> None:
    login = f"partner-{partner}"
    client = await _login(streams, login, f"_INBOX.{login}")
    try:
        through = await client.unrefused(
            [
                "lapor.inbound.sms",
                f"lapor.inbound.partner.{other}",
                "lapor.inbound.partner.>",
                "lapor.inbound.web",
                "lapor.event.complaint.received",
                "lapor.outbound.sms",
                "lapor.outbound.sms.status",
                "lapor.command.complaint.close",
                "$JS.API.STREAM.INFO.LAPOR_INBOUND",
                "$JS.API.STREAM.PURGE.LAPOR_INBOUND",
                "$JS.API.CONSUMER.CREATE.LAPOR_INBOUND",
            ],
            [
                ">",
                "lapor.>",
                "lapor.inbound.sms",
                "lapor.outbound.>",
                "_INBOX.>",
                f"_INBOX.partner-{other}.>",
                "$JS.>",
            ],
        )
        subject = f"lapor.inbound.partner.{partner}"
        ack = await client.nc.jetstream().publish(subject, b"{}", timeout=5)
    finally:
        await client.close()
    assert through == []
    assert ack.stream == "LAPOR_INBOUND"


def test_the_gateway_is_the_only_login_but_the_admin_that_submits_sms() -> None:
    senders = [user.name for user in nats_users() if "lapor.inbound.sms" in user.publish]
    assert senders == ["gateway"]
    assert {user.name for user in nats_users()} >= {"partner-whatsapp", "partner-sp4n"}
    assert "channel" not in {user.name for user in nats_users()}


async def test_gateway_reads_outbound_and_publishes_receipts_only(
    streams: Stack, own_nc: Any
) -> None:
    # notify's consumer of delivery receipts lives on the same stream.
    await _ensure_consumer(
        own_nc.jetstream(), "LAPOR_OUTBOUND", "notify-receipts", "lapor.outbound.sms.status"
    )
    client = await _login(streams, "gateway", "_INBOX.gateway")
    try:
        through = await client.unrefused(
            [
                "lapor.outbound.sms",
                "lapor.inbound.partner.whatsapp",
                "lapor.inbound.web",
                "lapor.event.complaint.received",
                "$JS.API.CONSUMER.CREATE.LAPOR_OUTBOUND.gw.lapor.outbound.sms",
                "$JS.API.CONSUMER.CREATE.LAPOR_OUTBOUND.gateway-sms.lapor.outbound.>",
                "$JS.API.CONSUMER.DURABLE.CREATE.LAPOR_OUTBOUND.gw",
                "$JS.API.CONSUMER.DURABLE.CREATE.LAPOR_OUTBOUND.gateway-sms",
                "$JS.API.CONSUMER.DELETE.LAPOR_OUTBOUND.gateway-sms",
                "$JS.API.STREAM.PURGE.LAPOR_OUTBOUND",
                "$JS.API.STREAM.UPDATE.LAPOR_OUTBOUND",
                "$JS.API.CONSUMER.MSG.NEXT.LAPOR_EVENTS.notify-received",
                # notify's consumer of receipts: not readable, not ackable by the gateway.
                "$JS.API.CONSUMER.INFO.LAPOR_OUTBOUND.notify-receipts",
                "$JS.API.CONSUMER.MSG.NEXT.LAPOR_OUTBOUND.notify-receipts",
                "$JS.ACK.LAPOR_OUTBOUND.notify-receipts.1.1.1.1.1",
                "$JS.API.CONSUMER.CREATE.LAPOR_OUTBOUND.notify-receipts.lapor.outbound.sms.status",
            ],
            ["lapor.inbound.>", "lapor.event.>", "_INBOX.>", ">"],
        )
        live = await client.nc.subscribe("lapor.outbound.>")
        await client.nc.flush()
        js = client.nc.jetstream()
        # Its own consumer, which the gateway declares itself, as the connector does.
        own = _consumer(GATEWAY_CONSUMER, "lapor.outbound.sms", DeliverPolicy.NEW)
        await js.add_consumer("LAPOR_OUTBOUND", own)
        sent = json.dumps({"to": "x", "text": "halo"}).encode()
        await own_nc.jetstream().publish("lapor.outbound.sms", sent)
        pulled = await js.pull_subscribe_bind(durable=GATEWAY_CONSUMER, stream="LAPOR_OUTBOUND")
        # Generous timeouts: CI shares the machine with other suites.
        messages = await pulled.fetch(1, timeout=20)
        await messages[0].ack()
        core = await live.next_msg(timeout=20)
        receipt = await js.publish("lapor.outbound.sms.status", b"{}", timeout=20)
        # The gateway is the one login that submits SMS.
        inbound = await js.publish("lapor.inbound.sms", b"{}", timeout=20)
        # Fetching from notify's consumer: the pull request never reaches the server.
        stolen = await js.pull_subscribe_bind(durable="notify-receipts", stream="LAPOR_OUTBOUND")
        with pytest.raises(nats.errors.TimeoutError):
            await stolen.fetch(1, timeout=1)
        fetch_refused = await client._refused(
            "publish", "$JS.API.CONSUMER.MSG.NEXT.LAPOR_OUTBOUND.notify-receipts"
        )
    finally:
        await client.close()
    assert through == []
    assert messages[0].data == sent and core.data == sent
    assert receipt.stream == "LAPOR_OUTBOUND"
    assert inbound.stream == "LAPOR_INBOUND"
    assert fetch_refused
    receipts = await own_nc.jetstream().consumer_info("LAPOR_OUTBOUND", "notify-receipts")
    assert receipts.num_pending == 1 and receipts.num_ack_pending == 0


async def test_dlq_watcher_reads_by_sequence_and_nothing_else(streams: Stack, own_nc: Any) -> None:
    # It replays events, commands and outbound messages for admins, never a channel's
    # inbound message: only the channel's own login may say who sent that.
    ack = await own_nc.jetstream().publish("lapor.event.complaint.received", b'{"n": 1}')
    client = await _login(streams, "dlq", "_INBOX.dlq")
    try:
        through = await client.unrefused(
            [
                "lapor.inbound.sms",
                "lapor.inbound.partner.kanal",
                "$JS.API.STREAM.DELETE.LAPOR_EVENTS",
                "$JS.API.STREAM.PURGE.LAPOR_ADVISORIES",
                "$JS.API.CONSUMER.MSG.NEXT.LAPOR_EVENTS.router-received",
            ],
            [">", "lapor.>", "_INBOX.>", "$JS.EVENT.>"],
        )
        stored = await client.nc.jetstream().get_msg("LAPOR_EVENTS", ack.seq)
        replays_an_event = not await client.publish_refused("lapor.event.complaint.received")
    finally:
        await client.close()
    assert through == []
    assert stored.data == b'{"n": 1}'
    assert replays_an_event


async def test_admin_may_do_everything(streams: Stack) -> None:
    client = await _login(streams, "admin")
    try:
        through = await client.unrefused([], [">", "$JS.EVENT.>"])
    finally:
        await client.close()
    assert through == ["sub >", "sub $JS.EVENT.>"]


@pytest.mark.parametrize("login", ["nobody", "wrong-password", "anonymous"])
async def test_unknown_logins_are_refused(streams: Stack, login: str) -> None:
    port = streams.nats_port
    url = {
        "nobody": f"nats://nobody:secret@127.0.0.1:{port}",
        "wrong-password": f"nats://intake:{streams.nats_password('router')}@127.0.0.1:{port}",
        "anonymous": f"nats://127.0.0.1:{port}",
    }[login]
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)


def test_services_cannot_read_each_others_inboxes() -> None:
    users = {user.name: user for user in nats_users()}
    inboxes = {name: user.subscribe for name, user in users.items() if name != "admin"}
    for name in SERVICES:
        assert inboxes[name] == (f"_INBOX.{name}.>",), name
    # Nobody but the admin reads the shared root, and no two logins share an inbox.
    readable = [s for subs in inboxes.values() for s in subs if s.startswith("_INBOX")]
    assert "_INBOX.>" not in readable
    assert len(readable) == len(set(readable)) == len(inboxes)


class Marker(BaseModel):
    complaint_id: str
    marker: str


async def test_a_service_broker_pulls_and_gets_pubacks_through_its_own_inbox(
    streams: Stack, own_nc: Any
) -> None:
    """The real wiring, not a hand-made client: FastStream's pull subscription and
    JetStream publish of a service use its inbox prefix, the only one it may read."""
    infra = InfraSettings(  # type: ignore[call-arg]
        NATS_URL=f"nats://127.0.0.1:{streams.nats_port}",
        NATS_USER="router",
        NATS_PASSWORD=streams.nats_password("router"),
        LAPOR_DATA_DIR=ROOT / "data",
    )

    async def no_dead_letters(_msg: Any, exc: Exception) -> None:
        raise AssertionError(f"unexpected contract violation: {exc}")

    broker = create_broker(
        infra, service="router", registry=CollectorRegistry(), on_invalid=no_dead_letters
    )
    routed = EventPublisher(broker, subjects.COMPLAINT_ROUTED, Marker, "routed")
    marker = os.urandom(6).hex()

    @durable(broker, subjects.COMPLAINT_RECEIVED, "router-received")
    async def route(body: dict[str, Any]) -> None:
        if body.get("marker") == marker:
            assert await routed.publish(Marker.model_validate(body), f"inbox-{marker}")

    seen: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_routed(msg: Any) -> None:
        await seen.put(msg.data)

    watch = await own_nc.subscribe(subjects.COMPLAINT_ROUTED, cb=on_routed)
    sent = json.dumps({"complaint_id": "LPR-INBX-0001", "marker": marker}).encode()
    async with broker_running(broker):
        assert broker.config.connection_state.connection._inbox_prefix == b"_INBOX.router"
        await own_nc.jetstream().publish(subjects.COMPLAINT_RECEIVED, sent)
        answer = await asyncio.wait_for(seen.get(), timeout=30)
    await watch.unsubscribe()
    assert json.loads(answer) == {"complaint_id": "LPR-INBX-0001", "marker": marker}


def test_compose_auth_conf_is_generated_from_the_wiring() -> None:
    assert AUTH_CONF.read_text() == render_auth_conf(nats_users()), (
        "ops/nats/auth.conf is stale: run `python -m tools.devstack auth-conf`"
    )


def test_compose_nats_config_is_valid_with_passwords_from_the_environment() -> None:
    env = {**os.environ, **{u.password_env: "secretPassword" for u in nats_users()}}
    env[NATS_STORE_KEY_ENV] = "storeKey" * 8
    conf = ROOT / "ops" / "nats" / "nats.conf"
    result = subprocess.run(
        [nats_server_bin(), "-t", "-c", str(conf)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr or result.stdout


def test_compose_gives_each_service_its_own_nats_login() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for service in SERVICES:
        env = services[service]["environment"]
        assert env["NATS_USER"] == service
        assert service_user(service).password_env in env["NATS_PASSWORD"]
    nats_env = services["nats"]["environment"]
    assert {u.password_env for u in nats_users()} <= set(nats_env)
    mounts = {Path(v.split(":")[1]).name: v.split(":")[0] for v in services["nats"]["volumes"]}
    assert mounts.get("auth.conf") == "./ops/nats/auth.conf"
