"""NATS logins and their allow-lists, derived from the services' wiring, and the
`authorization` block that nats-server reads (ops/nats/auth.conf for compose)."""

from __future__ import annotations

import importlib
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass

from lapor.contracts import subjects
from lapor.contracts.partners import PARTNER_NAME, PARTNERS, partner_login
from lapor.runtime.broker import broker_inbox, inbox_prefix
from services.deadletters import domain as dead_letters
from tools.devstack.layout import DLQ, ROOT, SERVICES

AUTH_CONF = ROOT / "ops" / "nats" / "auth.conf"
JS_API = "$JS.API"
OUTBOUND_STREAM = subjects.OUTBOUND_STREAM.name
# The SMS gateway connector's durable pull consumer of outgoing SMS: the one
# consumer its NATS user may create (filter lapor.outbound.sms) and read.
GATEWAY_CONSUMER = "gateway-sms"


@dataclass(frozen=True)
class NatsUser:
    """One NATS login and what it may publish and subscribe to (allow-lists)."""

    name: str
    role: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    @property
    def password_env(self) -> str:
        return f"LAPOR_NATS_{self.name.upper().replace('-', '_')}_PASSWORD"


def _stream_api(stream: str) -> list[str]:
    # Services declare the streams they touch at start-up: create is idempotent
    # for an equal config, and an existing stream with another config is kept
    # (`declare_consumers`), so they never update one. Update, delete, purge,
    # message delete, snapshot and restore stay with the admin.
    return [f"{JS_API}.STREAM.{verb}.{stream}" for verb in ("CREATE", "INFO")]


def _durable_api(stream: str, durable: str, filter_subject: str) -> list[str]:
    # The create subject carries the filter, and the server checks it against the
    # consumer's filter, so a login cannot widen its consumer, nor create or
    # change another one. Not the legacy DURABLE.CREATE form (no filter check),
    # no CONSUMER.DELETE, no other consumer names.
    return [
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}.{filter_subject}",
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def service_user(service: str) -> NatsUser:
    """What `service` needs, read from its wiring: its durables, streams and publishers."""
    wiring = importlib.import_module(f"services.{service}.wiring")
    broker = wiring.asyncapi().broker
    publish: list[str] = []
    streams: set[str] = set()
    for sub in broker.subscribers:
        stream, durable = sub.stream.name, sub.config.durable_name
        if sub.config.name != durable:
            # Without a name nats-py creates through DURABLE.CREATE, which is not allowed.
            raise ValueError(f"{service}: consumer {durable} needs name={durable!r}")
        streams.add(stream)
        filter_subject = sub.config.filter_subject or sub.subject.template
        publish += _durable_api(stream, durable, filter_subject)
    for pub in broker.publishers:
        publish.append(pub.subject.template)
        if pub.stream is not None:
            streams.add(pub.stream.name)
    for stream in sorted(streams):
        publish += _stream_api(stream)
    # Replies (PubAcks, pulled messages) come to the service's own inbox prefix.
    inbox = broker_inbox(broker)
    durables = ", ".join(sorted(sub.config.durable_name for sub in broker.subscribers))
    role = f"service; durable consumers {durables}"
    return NatsUser(service, role, tuple(sorted(set(publish))), (f"{inbox}.>",))


def partner_user(partner: str) -> NatsUser:
    """A partner system submits on its own subject only: intake takes the partner
    from the subject, so no partner can speak as another or as the SMS gateway."""
    if not PARTNER_NAME.fullmatch(partner):
        raise ValueError(f"partner name {partner!r}: lower-case letters and digits only")
    login = partner_login(partner)
    return NatsUser(
        login,
        f"partner system {partner}: submits complaints on its own subject only",
        (subjects.inbound_partner(partner),),
        (f"{inbox_prefix(login)}.>",),
    )


def nats_users(services: Sequence[str] = SERVICES) -> list[NatsUser]:
    """Every NATS login of a deployment, least privilege first, the admin last."""
    return [
        *(service_user(service) for service in services),
        *(partner_user(partner) for partner in PARTNERS),
        NatsUser(
            "gateway",
            "SMS gateway connector: the only login that submits SMS (and so names a "
            f"sender's number), outbound SMS through its consumer {GATEWAY_CONSUMER}, "
            "delivery receipts",
            (
                subjects.INBOUND_SMS,
                subjects.OUTBOUND_SMS_STATUS,
                f"{JS_API}.STREAM.INFO.{OUTBOUND_STREAM}",
                *_durable_api(OUTBOUND_STREAM, GATEWAY_CONSUMER, subjects.OUTBOUND_SMS),
            ),
            ("lapor.outbound.>", f"{inbox_prefix('gateway')}.>"),
        ),
        NatsUser(
            DLQ,
            "dead-letter watcher: advisories in, any stream's message by sequence, "
            "replays that admins ask for through its API on the original subjects of "
            "events, commands and outbound messages (never a channel's inbound one: "
            "only the channel's own login may say who sent it)",
            (
                *_stream_api(dead_letters.ADVISORY_STREAM),
                *_durable_api(
                    dead_letters.ADVISORY_STREAM, dead_letters.WATCHER, dead_letters.ADVISORY_FILTER
                ),
                f"{JS_API}.STREAM.MSG.GET.*",
                *subjects.EVENTS_STREAM.subjects,
                *subjects.COMMANDS_STREAM.subjects,
                *subjects.OUTBOUND_STREAM.subjects,
            ),
            (f"{dead_letters.INBOX_PREFIX}.>",),
        ),
        NatsUser("admin", "operators, tests, the CLI and the benchmark", (">",), (">",)),
    ]


def _allow(kind: str, subjects: Sequence[str]) -> list[str]:
    return [f"      {kind}: {{allow: [", *(f'        "{s}",' for s in subjects), "      ]}"]


def render_auth_conf(users: Sequence[NatsUser]) -> str:
    """The `authorization` block; passwords are `$LAPOR_NATS_<USER>_PASSWORD` variables
    that nats-server resolves from its environment."""
    lines = [
        "# NATS users of Lapor and their allow-lists (everything else is denied).",
        "# Generated from the services' wiring: `python -m tools.devstack auth-conf`.",
        "# Do not edit by hand; a test compares this file with the code.",
        "#",
        "# Passwords come from nats-server's environment, LAPOR_NATS_<USER>_PASSWORD:",
        "# letters and digits only, starting with a letter (nats-server parses the",
        "# value, so 1e5 or true would not stay a string).",
        "# Every client that waits for replies (JetStream PubAcks, pulled messages)",
        "# connects with the inbox prefix _INBOX.<user>, the only inbox its user may",
        "# read, so no login sees the replies meant for another.",
        "authorization {",
        "  users = [",
    ]
    for user in users:
        lines += [
            f"    # {user.name}: {user.role}",
            f"    {{user: {user.name}, password: ${user.password_env}, permissions: {{",
            *_allow("publish", user.publish),
            *_allow("subscribe", user.subscribe),
            "    }}",
        ]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def new_password() -> str:
    # Letters only: nats-server parses a variable's value, so "1e5" or "true"
    # would not stay a string.
    return "".join(secrets.choice(string.ascii_letters) for _ in range(32))
