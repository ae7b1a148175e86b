"""NATS JetStream wiring: streams, durable consumers, de-duplicated publishing.

Delivery rules every service gets from here:
- a handler's message is acked only after the handler returned, i.e. after its
  state is stored (`AckPolicy.NACK_ON_ERROR`); an exception means redelivery
  with backoff, up to `MAX_DELIVER` attempts, then the dead-letter path;
- every publish carries `Nats-Msg-Id`, so JetStream drops a re-publish; a
  publish whose PubAck does not come is sent again with the same id.

What happens to each consumed message (its log line, the delayed retries, the
quarantine of contract violations, the dead-letter record) is in
`lapor.runtime.handling`, whose middlewares every broker made here runs.
Replies to a service (PubAcks, pulled messages, API answers) come to its own
inbox prefix, `_INBOX.<service>`, the only one its NATS user may subscribe to.
"""

import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Annotated, Any

import nats.errors
from fast_depends.library import CustomField
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from faststream.nats.prometheus import NatsPrometheusMiddleware
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
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from lapor.contracts import subjects
from lapor.runtime import handling
from lapor.runtime.handling import MAX_DELIVER as MAX_DELIVER
from lapor.runtime.handling import RETRY_DELAYS_S as RETRY_DELAYS_S
from lapor.runtime.handling import UNAVAILABLE as UNAVAILABLE
from lapor.runtime.handling import DependencyUnavailable as DependencyUnavailable
from lapor.runtime.handling import InvalidHandler, MessageLog, RetryLater, quarantine_middleware
from lapor.runtime.handling import dead_letter_record as dead_letter_record
from lapor.runtime.handling import message_ids as message_ids
from lapor.runtime.settings import InfraSettings

log = logging.getLogger(__name__)

# Redelivery delays after a failed attempt; the server uses backoff[0] as ack wait,
# so the first entry must exceed the slowest normal handler run.
BACKOFF_S = [10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0]
DUPLICATE_WINDOW_S = 2 * 3600.0
STREAM_MAX_AGE_S = 30 * 24 * 3600.0


class _InTheLoop(CustomField):
    """The message being handled, resolved in the event loop. FastStream's `Context`
    field is synchronous, and FastDepends runs a synchronous field in a worker
    thread: a thread hand-off for every message, to read one context entry."""

    def __init__(self) -> None:
        super().__init__(cast=False)

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        assert self.param_name
        kwargs[self.param_name] = kwargs["context__"].resolve("message")
        return kwargs


# The message being handled, for a subscriber that needs more than its body (the
# delivery count, the stream's timestamp). FastStream's `NatsMessage` annotation
# resolves it through a worker thread.
Delivered = Annotated[NatsMessage, _InTheLoop()]


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


def inbox_prefix(service: str) -> str:
    """A login's own reply subjects: its NATS user may subscribe to these only."""
    return f"{DEFAULT_INBOX_PREFIX.decode()}.{service}"


def broker_inbox(broker: NatsBroker) -> str:
    """The inbox prefix `broker` connects with."""
    prefix = broker._connection_kwargs.get("inbox_prefix", DEFAULT_INBOX_PREFIX)
    return prefix.decode() if isinstance(prefix, bytes) else str(prefix)


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
        # The one count `lapor.runtime.handling` also ends its retries at.
        max_deliver=handling.MAX_DELIVER,
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
