"""How one consumed message is handled, whatever the service: its log line, its
retries, the quarantine of a contract violation, its dead-letter record.

- a handler's message is acked only after the handler returned; an exception
  means another attempt after `RETRY_DELAYS_S`, up to `MAX_DELIVER` attempts,
  then the dead-letter path;
- a message that does not match its contract is never retried: it is stored
  as a dead letter with the reason and acked (no crash loop);
- every handled message writes one log line (subject, consumer, delivery
  count, outcome, duration), and every line written while it is handled
  carries its complaint, event and command ids.

`lapor.runtime.broker` puts these middlewares on every service's broker.
"""

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple

import nats.errors
import pymongo.errors
from fast_depends.exceptions import ValidationError as ContractError
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import AckMessage, NackMessage, RejectMessage
from faststream.message import StreamMessage
from faststream.response import PublishCommand
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from pydantic import ValidationError as PydanticValidationError

from lapor.runtime.logs import ID_KEYS, bind_ids, bound_ids, mask_phones, unbind_ids

# The broker's own logger: these lines come from the broker's middlewares.
log = logging.getLogger("lapor.runtime.broker")
message_log = logging.getLogger("lapor.messages")

MAX_DELIVER = 8
# The wait before the next attempt after failed delivery n (a NAK with this delay).
# The first is short: a database or NATS restart leaves stale connections whose
# first use fails, and the next attempt then succeeds. Together they exceed 18
# minutes, which an outage must outlast before a message is dead-lettered.
RETRY_DELAYS_S = [1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]


class DependencyUnavailable(Exception):
    """A service's own downstream (an SMS gateway, a mail server) is away; the
    message is retried like one that met a database outage, or after `retry_in_s`
    when the failure knows when trying again is worth it (a wait that ends then)."""

    def __init__(self, *args: object, retry_in_s: float | None = None) -> None:
        super().__init__(*args)
        self.retry_in_s = retry_in_s


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
    further wait. A dependency that says when to try again (`retry_in_s`) is
    tried again then, not at the next step of the backoff.
    """

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except (AckMessage, NackMessage, RejectMessage):
            raise
        except Exception as exc:
            delay = retry_delay(_delivery_facts(msg)[2])
            if delay is None:
                raise
            if isinstance(exc, DependencyUnavailable) and exc.retry_in_s is not None:
                delay = max(exc.retry_in_s, RETRY_DELAYS_S[0])
            raise NackMessage(delay=delay) from exc


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
