"""Dead letters: messages no handler could process, kept for an operator.

Two roads lead into the `dead_letters` collection:

- a message that breaks its contract is stored by the consuming service itself
  (the quarantine middleware of `lapor.runtime.broker`, reason
  `contract_violation`) and acked;
- a message whose handler kept failing until JetStream stopped redelivering it
  (`max_deliver` attempts, reason `max_deliveries`), or that a handler
  terminated (`terminated`). JetStream announces both with advisories on
  `$JS.EVENT.ADVISORY.CONSUMER.{MAX_DELIVERIES,MSG_TERMINATED}.<STREAM>.<CONSUMER>`.

The advisories are core NATS messages, lost if nobody listens at that moment,
so the stream LAPOR_ADVISORIES keeps them. One small process, `lapor dlq watch`
(NATS user `dlq`), consumes that stream with a durable consumer, fetches each
failed message by stream sequence (it is still there: our streams use limits
retention) and stores it with the consumer, the delivery count and the last
error its service noted (`failure_notes`). A watcher that was down catches up
when it starts; storing is idempotent, so a repeated advisory changes nothing.

Payloads are sealed to the personal-data public key (`LAPOR_PII_PUBLIC_KEY`),
which the services and the watcher hold: they store dead letters but cannot
read any. Only the operator's commands below, given the private
`LAPOR_PII_KEY`, open them, and the watcher's HTTP API for admins
(`lapor.dlq_api`) where the operator gives the watcher that key to replay.

`lapor dlq list` shows the records (phone numbers masked); `lapor dlq replay`
publishes a stored payload again on its original subject with a new
`Nats-Msg-Id` (the old one would be dropped as a duplicate) and marks the
record replayed; `lapor dlq resolve` settles one an operator decided not to
replay, with the reason. A record neither replayed nor resolved is pending:
the `lapor_dead_letters` gauge counts those, and `LaporDeadLetters` fires
while there are any.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from lapor.runtime.pii import PiiOpener, PiiSealer

log = logging.getLogger("lapor.dlq")

COLLECTION = "dead_letters"
NOTES = "delivery_failures"
ADVISORY_STREAM = "LAPOR_ADVISORIES"
ADVISORY_SUBJECTS = (
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
)
ADVISORY_FILTER = "$JS.EVENT.ADVISORY.CONSUMER.>"
WATCHER = "dlq-watcher"
INBOX_PREFIX = "_INBOX.dlq"
ADVISORY_MAX_AGE_S = 30 * 24 * 3600.0
# Set by JetStream or by the publisher for one publish only; a replay must not repeat them.
_NOT_REPLAYED = ("Nats-Msg-Id", "Nats-Expected-")
_REASONS = {"MAX_DELIVERIES": "max_deliveries", "MSG_TERMINATED": "terminated"}

Document = dict[str, Any]
# Neither replayed nor resolved: an operator still has to decide (null matches a
# missing field).
PENDING: Document = {"replayed_at": None, "resolved_at": None}


def now() -> datetime:
    return datetime.now(UTC)


# -- the store ----------------------------------------------------------------------


class DeadLetterStore:
    """The `dead_letters` collection: one record per failed (message, consumer).

    A payload may carry a citizen's phone number, so it is stored sealed to the
    public key (`payload_sealed`, bound to the record id); callers that hold the
    private key see `payload_b64`.
    """

    def __init__(
        self,
        db: Any,
        sealer: PiiSealer | None = None,
        opener: PiiOpener | None = None,
        *,
        leave_sealed: bool = False,
    ) -> None:
        self.collection = db[COLLECTION]
        self.notes = db[NOTES]
        # An opener also seals; either may be absent for work that needs neither
        # (resolving a record).
        self._sealer = sealer or (opener.sealer() if opener is not None else None)
        self._opener = opener
        # Without the private key, list records with no payload rather than refuse
        # (the watcher's HTTP API where it holds only the public key).
        self._leave_sealed = leave_sealed and opener is None

    @property
    def opens_payloads(self) -> bool:
        return self._opener is not None

    @property
    def sealer(self) -> PiiSealer:
        if self._sealer is None:
            raise RuntimeError("storing a dead letter needs LAPOR_PII_PUBLIC_KEY")
        return self._sealer

    @property
    def opener(self) -> PiiOpener:
        if self._opener is None:
            raise RuntimeError("dead-letter payloads open only with LAPOR_PII_KEY")
        return self._opener

    async def add(self, record: Document) -> bool:
        """Store a record; False when it is already there (a repeated advisory)."""
        try:
            await self.collection.insert_one(self._sealed(record))
        except Exception as exc:
            if getattr(exc, "code", None) == 11000:
                return False
            raise
        return True

    async def get(self, record_id: str) -> Document | None:
        found: Document | None = await self.collection.find_one({"_id": record_id})
        return self._opened(found) if found is not None else None

    async def records(self, *, pending_only: bool = False, limit: int = 500) -> list[Document]:
        found, _more = await self.page(pending_only=pending_only, limit=limit)
        return found

    async def page(
        self,
        *,
        pending_only: bool = False,
        settled_only: bool = False,
        after: str | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> tuple[list[Document], int]:
        """Up to `limit` records, oldest first, that follow the record `after`, and how
        many more follow them. Records stored after `until` are left out, so that
        working through all pages ends even while new ones arrive. `settled_only`:
        those replayed or resolved."""
        query = self._query(pending_only, until, settled_only)
        if after is not None:
            mark = await self.collection.find_one({"_id": after}, {"stored_at": 1})
            if mark is None:
                raise LookupError(f"no dead letter {after}")
            # Keyset paging on (stored_at, _id): stable while records change state.
            keyset: Document = {
                "$or": [
                    {"stored_at": {"$gt": mark["stored_at"]}},
                    {"stored_at": mark["stored_at"], "_id": {"$gt": after}},
                ]
            }
            query = {"$and": [query, keyset]} if "$or" in query else {**query, **keyset}
        cursor = self.collection.find(query).sort([("stored_at", 1), ("_id", 1)]).limit(limit)
        found = [self._opened(doc) async for doc in cursor]
        more = 0
        if len(found) == limit:
            more = await self.collection.count_documents(query) - len(found)
        return found, more

    async def count(self, *, pending_only: bool = False, until: datetime | None = None) -> int:
        return int(await self.collection.count_documents(self._query(pending_only, until)))

    @staticmethod
    def _query(pending_only: bool, until: datetime | None, settled_only: bool = False) -> Document:
        query: Document = dict(PENDING) if pending_only else {}
        if settled_only:
            query["$or"] = [{"replayed_at": {"$ne": None}}, {"resolved_at": {"$ne": None}}]
        if until is not None:
            query["stored_at"] = {"$lte": until}
        return query

    def _sealed(self, record: Document) -> Document:
        stored = {k: v for k, v in record.items() if k != "payload_b64"}
        payload = record.get("payload_b64")
        stored["payload_sealed"] = (
            None if payload is None else self.sealer.seal(payload, str(record["_id"]))
        )
        return stored

    def _opened(self, stored: Document) -> Document:
        record = {k: v for k, v in stored.items() if k != "payload_sealed"}
        if "payload_b64" not in stored and self._leave_sealed:
            record["payload_b64"] = None
        elif "payload_b64" not in stored:
            sealed = stored.get("payload_sealed")
            record["payload_b64"] = (
                None if sealed is None else self.opener.open(sealed, str(stored["_id"]))
            )
        return record

    async def mark_replayed(self, record_id: str, msg_id: str, at: datetime) -> None:
        await self.collection.update_one(
            {"_id": record_id},
            {"$set": {"replayed_at": at, "replay_msg_id": msg_id}, "$inc": {"replays": 1}},
        )

    async def mark_resolved(self, record_id: str, reason: str, by: str, at: datetime) -> str:
        """Settle a record without a replay: "resolved", or "already" / "missing"."""
        settled = await self.collection.find_one_and_update(
            {"_id": record_id, "resolved_at": None},
            {"$set": {"resolved_at": at, "resolved_by": by, "resolution": reason}},
        )
        if settled is not None:
            return "resolved"
        return "already" if await self.collection.find_one({"_id": record_id}) else "missing"

    async def last_error(self, stream: str, sequence: int, consumer: str) -> str | None:
        note = await self.notes.find_one({"_id": _failure_id(stream, sequence, consumer)})
        return note.get("error") if note else None


def _failure_id(stream: str | None, sequence: int | None, consumer: str | None) -> str:
    return f"{stream}:{sequence}:{consumer}"


def failure_notes(db: Callable[[], Any]) -> Any:
    """A FastStream middleware that notes the last error of each failing delivery.

    The max-deliveries advisory says only that a message failed; this note
    tells the operator why. `db` returns the service's database (it exists only
    once the service started). Control-flow exceptions (NackMessage, ...) are
    not errors and are not noted.
    """
    from faststream._internal.middlewares import BaseMiddleware
    from faststream.exceptions import HandlerException

    class FailureNotes(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            try:
                return await call_next(msg)
            except HandlerException:
                raise
            except Exception as exc:
                await _note_failure(db, msg, exc)
                raise

    return FailureNotes


async def _note_failure(db: Callable[[], Any], msg: Any, exc: Exception) -> None:
    metadata = getattr(msg.raw_message, "metadata", None)
    if metadata is None:
        return
    note_id = _failure_id(metadata.stream, metadata.sequence.stream, metadata.consumer)
    note = {
        "error": f"{type(exc).__name__}: {exc}"[:2000],
        "delivery": metadata.num_delivered,
        "at": now(),
    }
    # The database may be the reason the handler failed: never let the note block
    # or replace the original error.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            db()[NOTES].update_one({"_id": note_id}, {"$set": note}, upsert=True), 2.0
        )


# -- the watcher --------------------------------------------------------------------


def record_from_advisory(
    advisory: Document, kind: str, message: Any | None, error: str | None
) -> Document:
    """The dead-letter record of one advisory and the message it is about."""
    stream, consumer = advisory["stream"], advisory["consumer"]
    sequence = int(advisory["stream_seq"])
    reason = _REASONS.get(kind, kind.lower())
    record: Document = {
        "_id": _failure_id(stream, sequence, consumer),
        "service": consumer.split("-", 1)[0],
        "consumer": consumer,
        "stream": stream,
        "stream_sequence": sequence,
        "reason": reason,
        "deliveries": advisory.get("deliveries"),
        "error": error or _default_error(reason, advisory),
        "advisory_id": advisory.get("id"),
        "failed_at": advisory.get("timestamp"),
        "stored_at": now(),
        "subject": None,
        "payload_b64": None,
        "headers": {},
    }
    if message is not None:
        record["subject"] = message.subject
        record["payload_b64"] = base64.b64encode(message.data or b"").decode("ascii")
        record["headers"] = dict(message.headers or {})
    return record


def _default_error(reason: str, advisory: Document) -> str:
    if reason == "max_deliveries":
        return f"handler failed {advisory.get('deliveries')} times (see the service log)"
    return f"terminated by the handler: {advisory.get('reason') or 'no reason given'}"


class DeadLetterWatcher:
    """Consumes LAPOR_ADVISORIES and turns each advisory into a dead-letter record."""

    def __init__(self, nc: Any, store: DeadLetterStore, batch: int = 16, replicas: int = 1) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.store = store
        self.batch = batch
        # As many copies as the services' streams: a dead letter must survive a node.
        self.replicas = replicas

    async def declare(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        config = StreamConfig(
            name=ADVISORY_STREAM,
            subjects=list(ADVISORY_SUBJECTS),
            storage=StorageType.FILE,
            max_age=ADVISORY_MAX_AGE_S,
            num_replicas=self.replicas,
        )
        try:
            await self.js.add_stream(config)
        except BadRequestError as exc:
            # Changed by an operator (limits, subjects): theirs to change, not ours.
            log.warning("%s kept as it is on the server: %s", ADVISORY_STREAM, exc.description)
        await self.js.add_consumer(
            ADVISORY_STREAM,
            ConsumerConfig(
                name=WATCHER,
                durable_name=WATCHER,
                filter_subject=ADVISORY_FILTER,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60.0,
                max_deliver=-1,
            ),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and store until `stop` is set; survives NATS and database restarts."""
        from nats.errors import TimeoutError as FetchTimeout

        sub: Any = None
        announced = False
        while not stop.is_set():
            try:
                if sub is None:
                    await self.declare()
                    sub = await self.js.pull_subscribe_bind(
                        durable=WATCHER, stream=ADVISORY_STREAM, inbox_prefix=None
                    )
                    if not announced:
                        log.info("dlq watcher watching %s", ADVISORY_STREAM)
                        announced = True
                messages = await sub.fetch(self.batch, timeout=2.0)
            except FetchTimeout:
                continue
            except Exception as exc:
                # A fresh subscription after any other failure: the pull
                # subscription of a broken connection may never deliver again.
                log.warning("advisory fetch failed (%s); subscribing again", type(exc).__name__)
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                sub = None
                await _sleep_or_stop(stop, 1.0)
                continue
            for message in messages:
                await self.handle(message)

    async def handle(self, message: Any) -> None:
        try:
            advisory = json.loads(message.data)
            kind = message.subject.split(".")[4]
            stream, sequence = advisory["stream"], int(advisory["stream_seq"])
        except (ValueError, KeyError, IndexError):
            log.error("unreadable advisory on %s dropped", message.subject)
            await message.ack()
            return
        try:
            await self.store_one(advisory, kind, stream, sequence)
        except Exception as exc:
            log.warning("dead letter %s:%s not stored yet (%s)", stream, sequence, exc)
            await message.nak(delay=5.0)
            return
        await message.ack()

    async def store_one(self, advisory: Document, kind: str, stream: str, sequence: int) -> None:
        from nats.js.errors import NotFoundError

        try:
            original = await self.js.get_msg(stream, sequence)
        except NotFoundError:
            original = None  # aged out or deleted before we got here
        error = await self.store.last_error(stream, sequence, advisory["consumer"])
        record = record_from_advisory(advisory, kind, original, error)
        if await self.store.add(record):
            log.warning(
                "dead letter %s: %s on %s after %s deliveries",
                record["_id"],
                record["reason"],
                record["subject"],
                record["deliveries"],
            )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def connect_nats(url: str, user: str | None, password: str | None, name: str) -> Any:
    """Connect, retrying until the server answers; reconnect forever afterwards."""
    import nats

    while True:
        try:
            return await nats.connect(
                url.split(","),
                user=user or None,
                password=password or None,
                name=name,
                inbox_prefix=INBOX_PREFIX,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=_log_nats_error,
            )
        except Exception as exc:
            log.warning("NATS not reachable yet (%s)", type(exc).__name__)
            await asyncio.sleep(1.0)


async def _log_nats_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc)


# -- replay -------------------------------------------------------------------------


def replay_headers(record: Document, msg_id: str) -> dict[str, str]:
    headers = {
        k: str(v)
        for k, v in (record.get("headers") or {}).items()
        if not k.startswith(_NOT_REPLAYED)
    }
    headers["Nats-Msg-Id"] = msg_id
    headers["Lapor-Replay-Of"] = record["_id"]
    return headers


async def replay_one(js: Any, store: DeadLetterStore, record: Document) -> str:
    """Publish the stored payload again on its subject; returns the new message id."""
    if not record.get("subject") or record.get("payload_b64") is None:
        raise ValueError(f"{record['_id']}: the message was gone, nothing to replay")
    msg_id = f"replay-{uuid.uuid4().hex}"
    await js.publish(
        record["subject"],
        base64.b64decode(record["payload_b64"]),
        headers=replay_headers(record, msg_id),
        timeout=10.0,
    )
    await store.mark_replayed(record["_id"], msg_id, now())
    return msg_id


# -- command line -------------------------------------------------------------------

dlq_app = typer.Typer(help="Dead letters: messages no handler could process.")

NatsUrl = Annotated[str, typer.Option("--nats", envvar="NATS_URL", help="NATS server URL")]
MongoUrl = Annotated[str, typer.Option("--mongo", envvar="MONGO_URL")]
MongoDb = Annotated[str, typer.Option("--db", envvar="MONGO_DB")]
# An operator's commands: through `lapor dlq` they take what the command line
# and the environment leave open from the running `make run` (lapor.cli). Its
# URLs carry passwords, so help never prints the default.
_FROM_STACK = "default: the running `make run`'s, else "
OperatorNatsUrl = Annotated[
    str,
    typer.Option(
        "--nats",
        envvar="NATS_URL",
        show_default=False,
        help=f"NATS server URL ({_FROM_STACK}nats://127.0.0.1:4222)",
    ),
]
OperatorMongoUrl = Annotated[
    str,
    typer.Option(
        "--mongo",
        envvar="MONGO_URL",
        show_default=False,
        help=f"MongoDB URL ({_FROM_STACK}mongodb://127.0.0.1:27017)",
    ),
]
OperatorMongoDb = Annotated[
    str,
    typer.Option(
        "--db", envvar="MONGO_DB", show_default=False, help=f"Database ({_FROM_STACK}lapor)"
    ),
]
PiiKey = Annotated[
    str,
    typer.Option(
        "--pii-key",
        envvar="LAPOR_PII_KEY",
        show_default=False,
        help="The private personal-data key, which opens stored payloads "
        "(default: the running `make run`'s)",
    ),
]
PiiPublicKey = Annotated[
    str,
    typer.Option(
        "--pii-public-key",
        envvar="LAPOR_PII_PUBLIC_KEY",
        show_default=False,
        help="Public half of the personal-data key: seals stored payloads, opens none",
    ),
]
PiiOldKeys = Annotated[
    str, typer.Option("--pii-old-keys", envvar="LAPOR_PII_OLD_KEYS", show_default=False)
]
DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_MONGO = "mongodb://127.0.0.1:27017"


def _opener(key: str, old_keys: str) -> PiiOpener:
    from lapor.runtime.pii import PiiKeyError
    from lapor.terminal import private_pii_keys

    try:
        return PiiOpener(*private_pii_keys(key, old_keys))
    except PiiKeyError as exc:
        raise typer.BadParameter(str(exc), param_hint="LAPOR_PII_KEY") from None


def _sealer(public_key: str) -> PiiSealer:
    from lapor.runtime.pii import PiiKeyError

    hint = "LAPOR_PII_PUBLIC_KEY"
    if not public_key:
        raise typer.BadParameter(
            "set LAPOR_PII_PUBLIC_KEY (or --pii-public-key): "
            "`python -m lapor.runtime.pii public-key` prints it",
            param_hint=hint,
        )
    try:
        return PiiSealer(public_key)
    except PiiKeyError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _client(mongo_url: str, app: str) -> Any:
    from pymongo import AsyncMongoClient

    return AsyncMongoClient(mongo_url, appname=app, tz_aware=True, serverSelectionTimeoutMS=5_000)


@dlq_app.command("watch")
def watch_command(
    nats_url: NatsUrl = DEFAULT_NATS,
    nats_user: Annotated[str | None, typer.Option(envvar="NATS_USER")] = None,
    nats_password: Annotated[str | None, typer.Option(envvar="NATS_PASSWORD")] = None,
    mongo_url: MongoUrl = DEFAULT_MONGO,
    mongo_db: MongoDb = "lapor",
    log_level: Annotated[str, typer.Option(envvar="LOG_LEVEL")] = "INFO",
    log_format: Annotated[str, typer.Option(envvar="LOG_FORMAT")] = "json",
    pii_public_key: PiiPublicKey = "",
    stream_replicas: Annotated[int, typer.Option(envvar="NATS_STREAM_REPLICAS", min=1, max=5)] = 1,
) -> None:
    """Run the watcher: store every message JetStream gave up on (until SIGTERM), and
    serve admins' HTTP API on DLQ_HTTP_PORT (8087; 0: none, for a second replica)."""
    import os

    from lapor.dlq_api import Connections, DlqSettings, create_app
    from lapor.runtime.logs import configure_logging
    from lapor.runtime.serve import serve

    sealer = _sealer(pii_public_key)
    # The private key, where the operator gave it, lets admins replay from the console.
    private_key = os.environ.get("LAPOR_PII_KEY", "")
    opener = _opener(private_key, os.environ.get("LAPOR_PII_OLD_KEYS", "")) if private_key else None
    configure_logging("dlq", log_level, log_format)
    settings = DlqSettings()
    if settings.http_port == 0:
        asyncio.run(
            _watch(nats_url, nats_user, nats_password, mongo_url, mongo_db, sealer, stream_replicas)
        )
        return
    connections = Connections(
        nats_url, nats_user, nats_password, mongo_url, mongo_db, stream_replicas
    )
    serve(create_app(settings, connections, sealer, opener), settings)


async def _watch(
    nats_url: str,
    user: str | None,
    password: str | None,
    mongo_url: str,
    mongo_db: str,
    sealer: PiiSealer,
    stream_replicas: int = 1,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = _client(mongo_url, "lapor-dlq")
    nc = await connect_nats(nats_url, user, password, "lapor-dlq")
    try:
        store = DeadLetterStore(client[mongo_db], sealer)
        await DeadLetterWatcher(nc, store, replicas=stream_replicas).run(stop)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        await client.close()
        log.info("dlq watcher stopped")


# Records an operator command reads or replays at a time: a page of `dlq list`,
# a batch of `dlq replay --all`.
PAGE = 500


@dlq_app.command("list")
def list_command(
    mongo_url: OperatorMongoUrl = DEFAULT_MONGO,
    mongo_db: OperatorMongoDb = "lapor",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False,
    pending: Annotated[
        bool, typer.Option("--pending", help="Only those neither replayed nor resolved")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Records on one page")] = PAGE,
    after: Annotated[
        str | None, typer.Option("--after", help="Start after this dead-letter id (next page)")
    ] = None,
    pii_key: PiiKey = "",
    pii_old_keys: PiiOldKeys = "",
) -> None:
    """List dead letters, oldest first, a page at a time (phone numbers in payloads
    are masked). When more remain, the last line says how to see them."""
    from lapor.terminal import err, run

    opener = _opener(pii_key, pii_old_keys)
    records, more = run(
        _list(mongo_url, mongo_db, pending, opener, limit=limit, after=after), mongo_url=mongo_url
    )
    views = [public_view(record) for record in records]
    if as_json:
        print(json.dumps(views, indent=2, ensure_ascii=False, default=str))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            "id",
            "reason",
            "consumer",
            "subject",
            "tries",
            "stored",
            "replayed",
            "resolved",
            "error",
        )
        for v in views:
            table.add_row(
                v["id"],
                v["reason"],
                v["consumer"] or v["service"] or "-",
                v["subject"] or "-",
                str(v["deliveries"] or "-"),
                str(v["stored_at"])[:19],
                str(v["replayed_at"] or "")[:19],
                str(v["resolved_at"] or "")[:19],
                (v["error"] or "")[:60],
            )
        Console().print(table)
        Console().print(f"{len(views)} dead letter(s)")
    if more:
        # On standard error: the JSON on standard output stays one valid array.
        err.print(f"{more} more, use --after {views[-1]['id']}", markup=False, soft_wrap=True)


def public_view(record: Document) -> Document:
    """What an operator sees: everything but the raw payload, whose phone numbers are masked."""
    from lapor.runtime.logs import mask_phones

    raw = base64.b64decode(record["payload_b64"]) if record.get("payload_b64") else b""
    return {
        "id": record["_id"],
        "reason": record.get("reason"),
        "service": record.get("service"),
        "consumer": record.get("consumer"),
        "stream": record.get("stream"),
        "stream_sequence": record.get("stream_sequence"),
        "subject": record.get("subject"),
        "deliveries": record.get("deliveries"),
        "error": mask_phones(record.get("error") or ""),
        "stored_at": record.get("stored_at"),
        "replayed_at": record.get("replayed_at"),
        "replays": record.get("replays", 0),
        "resolved_at": record.get("resolved_at"),
        "resolved_by": record.get("resolved_by"),
        "resolution": record.get("resolution"),
        "payload": mask_phones(raw.decode("utf-8", "replace")),
    }


async def _list(
    mongo_url: str,
    mongo_db: str,
    pending: bool,
    opener: PiiOpener,
    *,
    limit: int = PAGE,
    after: str | None = None,
) -> tuple[list[Document], int]:
    from lapor.terminal import fail, mongo_client

    client = mongo_client(mongo_url)
    try:
        store = DeadLetterStore(client[mongo_db], opener=opener)
        try:
            return await store.page(pending_only=pending, after=after, limit=limit)
        except LookupError as exc:
            fail(str(exc))
    finally:
        await client.close()


@dlq_app.command("replay")
def replay_command(
    record_id: Annotated[str | None, typer.Argument(help="Dead-letter id from `dlq list`")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Every one neither replayed nor resolved")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, publish nothing")] = False,
    nats_url: OperatorNatsUrl = DEFAULT_NATS,
    mongo_url: OperatorMongoUrl = DEFAULT_MONGO,
    mongo_db: OperatorMongoDb = "lapor",
    pii_key: PiiKey = "",
    pii_old_keys: PiiOldKeys = "",
) -> None:
    """Publish dead letters again on their original subjects, with a new message id.
    `--all` works through every waiting one in batches of 500, with progress."""
    from lapor.terminal import run

    if (record_id is None) == (not replay_all):
        raise typer.BadParameter("give one dead-letter id or --all")
    opener = _opener(pii_key, pii_old_keys)
    _done, failed = run(
        _replay(nats_url, mongo_url, mongo_db, record_id, dry_run, opener),
        mongo_url=mongo_url,
        nats_url=nats_url,
    )
    raise typer.Exit(1 if failed else 0)


async def _replay(
    nats_url: str,
    mongo_url: str,
    mongo_db: str,
    record_id: str | None,
    dry_run: bool,
    opener: PiiOpener,
) -> tuple[int, int]:
    from lapor.terminal import connect_nats, fail, mongo_client

    # NATS first: a replay that cannot publish should say so before reading anything.
    nc = None if dry_run else await connect_nats(nats_url)
    client = mongo_client(mongo_url)
    store = DeadLetterStore(client[mongo_db], opener=opener)
    try:
        if record_id is not None:
            found = await store.get(record_id)
            if found is None:
                fail(f"no dead letter {record_id}")
            batches = _one(found)
            total = 1
        else:
            # What waits now; a replay that fails again comes back as a new record,
            # stored later, and is not replayed a second time in this run.
            until = now()
            total = await store.count(pending_only=True, until=until)
            batches = _pending_batches(store, until)
        if nc is None:
            shown = 0
            async for batch in batches:
                for record in batch:
                    print(f"would replay {record['_id']} on {record.get('subject')}")
                shown += len(batch)
            return shown, 0
        return await _replay_records(nc.jetstream(), store, batches, total)
    finally:
        if nc is not None:
            await nc.close()
        await client.close()


async def _one(record: Document) -> AsyncIterator[list[Document]]:
    yield [record]


async def _pending_batches(
    store: DeadLetterStore, until: datetime
) -> AsyncIterator[list[Document]]:
    after: str | None = None
    while True:
        batch, _more = await store.page(pending_only=True, after=after, until=until, limit=PAGE)
        if not batch:
            return
        yield batch
        after = batch[-1]["_id"]


@dlq_app.command("resolve")
def resolve_command(
    record_id: Annotated[str, typer.Argument(help="Dead-letter id from `dlq list`")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why it is not replayed; kept with the record")
    ],
    mongo_url: OperatorMongoUrl = DEFAULT_MONGO,
    mongo_db: OperatorMongoDb = "lapor",
) -> None:
    """Settle a dead letter without replaying it (a test message, fixed by hand, obsolete)."""
    from lapor.runtime.logs import mask_phones
    from lapor.terminal import fail, run

    if not reason.strip():
        raise typer.BadParameter("say why it is not replayed", param_hint="--reason")
    # Free text an operator typed: it may quote the citizen's number.
    note = mask_phones(reason.strip())[:500]
    outcome = run(_resolve(mongo_url, mongo_db, record_id, note, _operator()), mongo_url=mongo_url)
    if outcome == "missing":
        fail(f"no dead letter {record_id}")
    print(f"{record_id} was resolved before" if outcome == "already" else f"resolved {record_id}")


def _operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"


async def _resolve(mongo_url: str, mongo_db: str, record_id: str, reason: str, by: str) -> str:
    from lapor.terminal import mongo_client

    client = mongo_client(mongo_url)
    try:
        store = DeadLetterStore(client[mongo_db])
        return await store.mark_resolved(record_id, reason, by, now())
    finally:
        await client.close()


async def _replay_records(
    js: Any, store: DeadLetterStore, batches: AsyncIterator[list[Document]], total: int
) -> tuple[int, int]:
    from lapor.terminal import err, progress

    done = failed = 0
    with progress() as shown:
        task = shown.add_task("replaying dead letters", total=total)
        async for batch in batches:
            for record in batch:
                try:
                    msg_id = await replay_one(js, store, record)
                except Exception as exc:
                    err.print(f"{record['_id']}: not replayed ({exc})", markup=False)
                    failed += 1
                else:
                    print(f"replayed {record['_id']} on {record['subject']} as {msg_id}")
                    done += 1
                shown.advance(task)
    err.print(f"{done} replayed, {failed} failed", markup=False)
    return done, failed


if __name__ == "__main__":
    dlq_app()
