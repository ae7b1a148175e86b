"""NATS JetStream wiring: streams, durable consumers, de-duplicated publishing, quarantine.

Delivery rules every service gets from here:
- a handler's message is acked only after the handler returned, i.e. after its
  state is stored (`AckPolicy.NACK_ON_ERROR`); an exception means redelivery
  with backoff, up to `MAX_DELIVER` attempts, then the dead-letter path;
- a message that does not match its contract is never retried: it is stored
  as a dead letter with the reason and acked (no crash loop);
- every publish carries `Nats-Msg-Id`, so JetStream drops a re-publish; a
  publish whose PubAck does not come is sent again with the same id.

Every handled message writes one log line (subject, consumer, delivery count,
outcome, duration), and every line written while it is handled carries its
complaint, event and command ids. Replies to a service (PubAcks, pulled
messages, API answers) come to its own inbox prefix, `_INBOX.<service>`, the
only one its NATS user may subscribe to.
"""

import base64
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple

import nats.errors
import pymongo.errors
from fast_depends.exceptions import ValidationError as ContractError
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import AckMessage, NackMessage, RejectMessage
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.prometheus import NatsPrometheusMiddleware
from faststream.response import PublishCommand
from faststream.security import SASLPlaintext
from nats.aio.client import DEFAULT_INBOX_PREFIX
from nats.js.api import AckPolicy as AckPolicyJS
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType
from nats.js.errors import (
    BadRequestError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from lapor.contracts import subjects
from lapor.runtime.logs import ID_KEYS, bind_ids, bound_ids, mask_phones, unbind_ids
from lapor.runtime.settings import InfraSettings

log = logging.getLogger(__name__)
message_log = logging.getLogger("lapor.messages")

MAX_DELIVER = 8
# Redelivery delays after a failed attempt; the server uses backoff[0] as ack wait,
# so the first entry must exceed the slowest normal handler run.
BACKOFF_S = [10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0]
# The wait before the next attempt after failed delivery n (a NAK with this delay).
# The first is short: a database or NATS restart leaves stale connections whose
# first use fails, and the next attempt then succeeds. Together they exceed 18
# minutes, which an outage must outlast before a message is dead-lettered.
RETRY_DELAYS_S = [1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]
DUPLICATE_WINDOW_S = 2 * 3600.0
STREAM_MAX_AGE_S = 30 * 24 * 3600.0


def stream_for(subject: str) -> JStream:
    # A fresh declaration each time: FastStream marks a declaration as done after
    # the first broker start, and tests run several brokers in one process.
    for spec in subjects.STREAMS:
        if any(subject.startswith(pattern.removesuffix(">")) for pattern in spec.subjects):
            return JStream(
                spec.name,
                subjects=list(spec.subjects),
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_age=STREAM_MAX_AGE_S,
            )
    raise ValueError(f"no stream covers subject {subject!r}")


class DependencyUnavailable(Exception):
    """A service's own downstream (an SMS gateway, a mail server) is away; the
    message is retried like one that met a database outage."""


# A dependency that is away (database, NATS): the failure says nothing about the
# message, so its traceback is not worth a log line on every attempt.
UNAVAILABLE: tuple[type[Exception], ...] = (
    DependencyUnavailable,
    pymongo.errors.ConnectionFailure,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    NoStreamResponseError,
    ServiceUnavailableError,
)

_CONTRACT_ERRORS = (
    ContractError,
    PydanticValidationError,
    UnicodeDecodeError,
    json.JSONDecodeError,
)

InvalidHandler = Callable[[StreamMessage[Any], Exception], Awaitable[None]]


def inbox_prefix(service: str) -> str:
    """A login's own reply subjects: its NATS user may subscribe to these only."""
    return f"{DEFAULT_INBOX_PREFIX.decode()}.{service}"


def broker_inbox(broker: NatsBroker) -> str:
    """The inbox prefix `broker` connects with."""
    prefix = broker._connection_kwargs.get("inbox_prefix", DEFAULT_INBOX_PREFIX)
    return prefix.decode() if isinstance(prefix, bytes) else str(prefix)


def message_ids(body: Any) -> dict[str, str]:
    """The complaint, event, command and notification ids of a JSON message body."""
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):
            return {}
    if not isinstance(body, dict):
        return {}
    ids = {key: value for key in ID_KEYS if isinstance(value := body.get(key), str) and value}
    # A citizen command's answer names the complaint by the tracking id it asked about.
    if "complaint_id" not in ids and isinstance(tracking := body.get("tracking_id"), str):
        ids["complaint_id"] = tracking
    # Ids are short; anything else is not an id worth a log field.
    return {key: value[:64] for key, value in ids.items() if value}


async def _decoded_or_raw(msg: StreamMessage[Any]) -> Any:
    """The body as the handler will see it: FastStream caches the decoded form, so
    the handler does not parse the JSON a second time. Undecodable bodies stay raw."""
    try:
        return await msg.decode()
    except Exception:
        return msg.body


class _Handling:
    """What the middlewares of one message tell each other."""

    __slots__ = ("dead_letter",)

    def __init__(self) -> None:
        self.dead_letter = False


_handling: ContextVar[_Handling | None] = ContextVar("lapor_handling", default=None)


class _Outcome(NamedTuple):
    """How the handling of one message ended, as its log line says it."""

    name: str
    error: str | None
    level: int


def _delivery_facts(msg: StreamMessage[Any]) -> tuple[str | None, str | None, int | None]:
    """The message's subject, and the consumer and attempt number of its delivery."""
    raw = msg.raw_message
    subject = getattr(raw, "subject", None)
    try:
        metadata = raw.metadata
        return subject, metadata.consumer, metadata.num_delivered
    except Exception:  # not a JetStream delivery (core NATS, the test broker)
        return subject, None, None


def _failure_outcome(exc: Exception, delivery: int | None) -> _Outcome:
    """The outcome of a handling that raised `exc` (FastStream's ack signals included)."""
    if isinstance(exc, AckMessage):
        return _Outcome("acked", None, logging.INFO)
    if isinstance(exc, NackMessage):
        if exc.__cause__ is None:
            return _Outcome("retry", None, logging.WARNING)
        # A failure `RetryLater` turned into a delayed NAK.
        error = type(exc.__cause__).__name__
        log.warning(
            "attempt %s failed (%s: %s), retried in %.0f s",
            delivery,
            error,
            mask_phones(str(exc.__cause__)[:500]),
            exc.extra_options.get("delay") or 0.0,
            exc_info=not isinstance(exc.__cause__, UNAVAILABLE),
        )
        return _Outcome("retry", error, logging.WARNING)
    if isinstance(exc, RejectMessage):
        return _Outcome("rejected", None, logging.WARNING)
    # NACK_ON_ERROR: redelivered with backoff until the last attempt.
    last = delivery is None or delivery >= MAX_DELIVER
    return _Outcome("failed" if last else "retry", type(exc).__name__, logging.WARNING)


class MessageLog(BaseMiddleware):
    """Binds a consumed message's ids to the log context and writes its outcome line.

    First of the broker's middlewares, so that the quarantine's and the handler's
    lines are written inside the binding. A handler that publishes an event for a
    complaint the message did not name (intake creating one from an SMS) binds
    that complaint for the rest of the message.
    """

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        subject, consumer, delivery = _delivery_facts(msg)
        ids_token = bind_ids(**message_ids(await _decoded_or_raw(msg)))
        handling = _Handling()
        handling_token = _handling.set(handling)
        started = time.perf_counter()
        # Cancelled (shutdown) unless the handler returns or raises.
        outcome = _Outcome("interrupted", None, logging.WARNING)
        try:
            result = await call_next(msg)
            outcome = _Outcome("acked", None, logging.INFO)
            return result
        except Exception as exc:
            outcome = _failure_outcome(exc, delivery)
            raise
        finally:
            if handling.dead_letter:
                outcome = _Outcome("dead_letter", outcome.error, logging.WARNING)
            self._write_outcome(subject, consumer, delivery, outcome, started)
            _handling.reset(handling_token)
            unbind_ids(ids_token)

    def _write_outcome(
        self,
        subject: str | None,
        consumer: str | None,
        delivery: int | None,
        outcome: _Outcome,
        started: float,
    ) -> None:
        known = dict(bound_ids())
        # FastStream writes its own error line (with the traceback) after this
        # scope has ended; it takes its fields from this per-message dict.
        faststream_fields = self.context.get_local("log_context")
        if isinstance(faststream_fields, dict):
            faststream_fields.update(known)
        message_log.log(
            outcome.level,
            "handled %s: %s",
            subject,
            outcome.name,
            extra={
                "subject": subject,
                "consumer": consumer,
                "delivery": delivery,
                "outcome": outcome.name,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "error": outcome.error,
            },
        )

    async def publish_scope(self, call_next: Any, cmd: PublishCommand) -> Any:
        if _handling.get() is not None and "complaint_id" not in bound_ids():
            if complaint_id := message_ids(cmd.body).get("complaint_id"):
                # Reset with the message's own binding when its scope ends.
                bind_ids(complaint_id=complaint_id)
        return await call_next(cmd)


def retry_delay(delivery: int | None) -> float | None:
    """Seconds to wait before the next attempt after failed delivery `delivery`,
    or None when it was the last one (the dead-letter path takes it from there)."""
    if delivery is None or delivery >= MAX_DELIVER:
        return None
    return RETRY_DELAYS_S[min(delivery, len(RETRY_DELAYS_S)) - 1]


class RetryLater(BaseMiddleware):
    """A failed attempt is redelivered after the backoff, not at once.

    FastStream's NACK_ON_ERROR sends a plain NAK, which the server redelivers
    immediately whatever the consumer's backoff: a database restart would use up
    every delivery within seconds and send healthy messages to the dead-letter
    store. A NAK with the delays of `RETRY_DELAYS_S` spreads the `MAX_DELIVER`
    attempts over more than 18 minutes, which an outage of the database or of
    NATS has to outlast before anything is dead-lettered. The last attempt is
    NAKed plainly, so a poison message reaches the dead-letter path without a
    further wait.
    """

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except (AckMessage, NackMessage, RejectMessage):
            raise
        except Exception as exc:
            delay = retry_delay(_delivery_of(msg))
            if delay is None:
                raise
            raise NackMessage(delay=delay) from exc


def _delivery_of(msg: StreamMessage[Any]) -> int | None:
    try:
        return int(msg.raw_message.metadata.num_delivered)
    except Exception:  # not a JetStream delivery (core NATS, the test broker)
        return None


def quarantine_middleware(on_invalid: InvalidHandler) -> Callable[..., BaseMiddleware]:
    """Turn contract violations into a stored dead letter instead of a redelivery loop."""

    class Quarantine(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
            try:
                return await call_next(msg)
            except _CONTRACT_ERRORS as exc:
                await on_invalid(msg, exc)
                if (handling := _handling.get()) is not None:
                    handling.dead_letter = True
                return None

    return Quarantine


def create_broker(
    infra: InfraSettings,
    *,
    service: str,
    registry: CollectorRegistry,
    on_invalid: InvalidHandler,
    failure_notes: Callable[..., BaseMiddleware] | None = None,
) -> NatsBroker:
    """`failure_notes`: notes each failed delivery's error for the dead-letter record;
    inside RetryLater, which turns the error into a delayed NAK, and outside the
    quarantine, whose contract violations are kept and acked, not failures."""
    broker = NatsBroker(
        infra.nats_url.split(","),
        name=f"lapor-{service}",
        security=(
            SASLPlaintext(username=infra.nats_user, password=infra.nats_password or "")
            if infra.nats_user
            else None
        ),
        # Never give up on the server: a restart of NATS must not kill the service.
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        # Replies to this service only; `durable` passes it on to pull subscriptions.
        inbox_prefix=inbox_prefix(service),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        middlewares=[
            MessageLog,
            RetryLater,
            *([failure_notes] if failure_notes is not None else []),
            NatsPrometheusMiddleware(registry=registry, app_name=service),
            quarantine_middleware(on_invalid),
        ],
        graceful_timeout=20.0,
        # Through our own handlers (JSON, phone masking); per-message lines at DEBUG.
        logger=logging.getLogger("lapor.broker"),
        log_level=logging.DEBUG,
    )
    _stream_replicas[broker] = infra.nats_stream_replicas
    return broker


def durable(
    broker: NatsBroker,
    subject: str,
    consumer: str,
    *,
    title: str | None = None,
    description: str | None = None,
    batch_size: int = 32,
) -> Any:
    """Decorator for a durable pull consumer with the project's redelivery policy."""
    stream = stream_for(subject)
    config = ConsumerConfig(
        # With a name, nats-py creates and updates the consumer through
        # CONSUMER.CREATE.<stream>.<name>.<filter>, whose filter the server checks:
        # the only create subject a service's NATS user is allowed.
        name=consumer,
        durable_name=consumer,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicyJS.EXPLICIT,
        filter_subject=subject,
        max_deliver=MAX_DELIVER,
        backoff=BACKOFF_S,
        max_ack_pending=1000,
    )
    _consumers.setdefault(broker, []).append((stream.name, config))
    return broker.subscriber(
        subject,
        stream=stream,
        durable=consumer,
        pull_sub=PullSub(batch_size=batch_size, timeout=2.0),
        # FastStream gives pull subscriptions the default `_INBOX.` unless told.
        inbox_prefix=f"{broker_inbox(broker)}.".encode(),
        config=config,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=title,
        description=description,
    )


# Stream copies per broker (`NATS_STREAM_REPLICAS`), applied when its streams are created.
_stream_replicas: "weakref.WeakKeyDictionary[NatsBroker, int]" = weakref.WeakKeyDictionary()

# Consumer declarations per broker, applied by `declare_consumers` at start-up.
_consumers: "weakref.WeakKeyDictionary[NatsBroker, list[tuple[str, ConsumerConfig]]]" = (
    weakref.WeakKeyDictionary()
)


async def declare_consumers(broker: NatsBroker) -> None:
    """Declare the broker's streams, then create or update every durable consumer,
    before consuming starts.

    A stream that exists with another configuration is kept as it is: changing
    a stream (limits, subjects) is an operator's decision, and a service's NATS
    user may create and read streams but not update them. FastStream would
    update it, so its own declaration is switched off once ours ran.

    The server keeps an existing consumer's old settings when a client merely
    subscribes to it; creating it again with the same name updates the
    settings that may change (max_deliver, backoff, ...), so a new release
    takes effect without deleting consumers and their position.
    """
    await broker.connect()
    js = broker.config.connection_state.stream
    replicas = _stream_replicas.get(broker, 1)
    for stream, stream_subjects in broker._stream_builder.objects.values():
        if stream.declare:
            stream.config.num_replicas = replicas
            await _declare_stream(js, stream, list(stream_subjects))
            stream.declare = False
    for stream_name, config in _consumers.get(broker, []):
        with contextlib.suppress(NotFoundError):
            await js.add_consumer(stream_name, config=config)


# JetStream's answer to a create whose configuration differs from the stream's.
_STREAM_NAME_IN_USE = 10058
# What a difference is reported by, besides the subjects: the settings we declare.
_STREAM_FIELDS = ("storage", "max_age", "duplicate_window")


async def _declare_stream(js: Any, stream: JStream, stream_subjects: list[str]) -> None:
    try:
        await js.add_stream(config=stream.config, subjects=stream_subjects)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_NAME_IN_USE:
            raise
        actual = (await js.stream_info(stream.name)).config
        declared = {"subjects": sorted(stream_subjects)}
        declared.update({f: getattr(stream.config, f) for f in _STREAM_FIELDS})
        found = {"subjects": sorted(actual.subjects or [])}
        found.update({f: getattr(actual, f) for f in _STREAM_FIELDS})
        differs = [
            f"{name} {found[name]!r} on the server, {value!r} declared"
            for name, value in declared.items()
            if found[name] != value
        ]
        log.warning(
            "stream %s differs from its declaration, kept as it is (an operator "
            "updates streams): %s",
            stream.name,
            ", ".join(differs) or "settings this service does not declare",
        )


# PubAck waits of one publish, attempt by attempt. A PubAck that died with its
# server never comes; short first waits send the message again (same
# Nats-Msg-Id, so the server stores it once) as soon as the connection is back,
# instead of holding the consumer's whole batch; two of them, as the second
# may still go out on the dying connection. Later waits are longer, for a
# server that is alive but slow (fsync before every ack). Together they stay
# below the consumers' ack wait (BACKOFF_S[0]), after which the server would
# hand the message being handled to another delivery.
PUBACK_TIMEOUTS_S = (1.0, 1.0, 2.0, 3.0)
# A server restarting or JetStream not ready yet: worth another attempt.
_PUBLISH_RETRIED = (
    nats.errors.TimeoutError,
    nats.errors.OutboundBufferLimitError,
    NoStreamResponseError,
    ServiceUnavailableError,
)


class EventPublisher:
    """A publisher declared once, publishing with de-duplication by message id."""

    def __init__(self, broker: NatsBroker, subject: str, schema: type[BaseModel], title: str):
        self.subject = subject
        self.schema = schema
        self._publisher = broker.publisher(
            subject, stream=stream_for(subject), schema=schema, title=title
        )

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        """Publish and wait for JetStream's ack; returns False for a dropped duplicate."""
        body = message.model_dump(mode="json", by_alias=True)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_PUBLISH_RETRIED),
            stop=stop_after_attempt(len(PUBACK_TIMEOUTS_S)),
            wait=wait_random_exponential(multiplier=0.1, max=0.5),
            before_sleep=_log_publish_retry,
            reraise=True,
        )
        async for attempt in retrying:
            number = attempt.retry_state.attempt_number
            with attempt:
                # FastStream's stub says None, but a publish with a stream returns the PubAck.
                ack: Any = await self._publisher.publish(  # type: ignore[func-returns-value]
                    body,
                    headers={"Nats-Msg-Id": msg_id},
                    timeout=PUBACK_TIMEOUTS_S[number - 1],
                )
        # After an unanswered attempt, a duplicate is most likely that attempt's own
        # copy, stored before its PubAck was lost: the message is new all the same.
        return number > 1 or not getattr(ack, "duplicate", False)


def _log_publish_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "publish attempt %d got no PubAck (%s), sending again with the same message id",
        state.attempt_number,
        type(exc).__name__,
    )


def dead_letter_record(
    service: str, msg: StreamMessage[Any], exc: Exception, reason: str
) -> dict[str, Any]:
    """A storable description of a message that could not be processed."""
    raw: bytes = msg.body if isinstance(msg.body, bytes) else bytes(str(msg.body), "utf-8")
    nats_msg = msg.raw_message
    try:
        metadata = nats_msg.metadata
    except Exception:  # not a JetStream delivery (core NATS, the test broker): no sequence
        metadata = None
    sequence = metadata.sequence.stream if metadata is not None else None
    stream = metadata.stream if metadata is not None else None
    return {
        "_id": f"{stream}:{sequence}" if sequence is not None else msg.message_id,
        "service": service,
        "subject": getattr(nats_msg, "subject", None),
        "stream": stream,
        "stream_sequence": sequence,
        "reason": reason,
        # A validation error quotes the input it refused, phone numbers included.
        "error": mask_phones(str(exc)[:2000]),
        "payload_b64": base64.b64encode(raw[:64_000]).decode("ascii"),
        "stored_at": datetime.now(UTC),
    }
