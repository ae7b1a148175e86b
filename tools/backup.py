"""`lapor backup` and `lapor restore`: the database and the JetStream streams, in one folder.

Written with pymongo and nats-py, not `mongodump` and the `nats` CLI: neither
is installed next to the services, `mongodump` relies on commands FerretDB v1
does not have, and the streams need what only the JetStream API tells (each
consumer's position).

A backup folder holds:
- `manifest.json`: when, which database, and per collection its file,
  document count, SHA-256 and indexes; per stream its configuration, its
  file and message count, and each durable consumer's configuration and
  position (the stream sequence everything below which was acknowledged);
- `db/<collection>.bson.gz`: the documents as concatenated BSON, gzipped (the
  format of mongodump's `.bson.gz` files); personal data in them is sealed
  as it is in the database;
- `streams/<stream>.jsonl.gz`: one line per message (sequence, time, subject,
  headers, payload), each sealed to the personal-data public key: inbound
  SMS carry phone numbers in clear, which on the server only the store
  encryption protects. Writing a backup needs the public key alone; a
  restore needs the private `LAPOR_PII_KEY`.

Writes during a backup: collections are read one after the other, each
document as it is at that moment, and nothing on FerretDB gives a snapshot
across collections. So the consumers' positions are read first, then the
database, then the streams' messages. Every message whose effect may be
missing from the database copy is then at or above its consumer's saved
position, and after a restore JetStream delivers it again; the handlers are
idempotent, so an effect that is there already is not repeated. Messages that
arrive during the backup are in the stream copy. Stopping the four services
first (NATS keeps accepting messages) gives an exact point.

A restore goes into an empty database and a NATS without these streams
(`--replace` drops what is there first): indexes are recreated, documents
inserted, each stream recreated with its configuration and its messages
published again in order (they get new sequence numbers and times; their
`Nats-Msg-Id` is kept), and each durable consumer is created to start at the
first message it had not acknowledged. The services then catch up by
themselves: SLA's start-up sweep fires every timer that fell due meanwhile,
notify retries what was pending, the outbox sweeper publishes leftovers.

Not in a backup: database users and NATS logins (they come from the
deployment's configuration), and the secrets: the PII key, which opens the
sealed personal data in both, and the NATS store key are backed up apart.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lapor.runtime.pii import PiiOpener, PiiSealer

Document = dict[str, Any]

FORMAT = "lapor-backup/1"
MANIFEST = "manifest.json"
BATCH = 500
# Set by JetStream or by the publisher for one publish only; a restore must not repeat them.
_NOT_RESTORED = ("Nats-Expected-",)


class RestoreError(Exception):
    """A restore that would overwrite data or cannot read its backup."""


@dataclass
class Positions:
    """Per stream, the configuration and each durable consumer, read before the data."""

    streams: dict[str, Document]


def _plain(value: Any) -> Any:
    """A nats-py config as JSON: enums as their values, no empty fields."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return value


async def read_positions(js: Any) -> Positions:
    streams: dict[str, Document] = {}
    for info in await js.streams_info():
        name = info.config.name
        consumers = []
        for consumer in await js.consumers_info(name):
            if not consumer.config.durable_name:
                continue  # an ephemeral consumer belongs to a client that is gone after a restore
            consumers.append(
                {
                    "config": _plain(consumer.config),
                    "acknowledged_below": (consumer.ack_floor.stream_seq or 0) + 1,
                }
            )
        streams[name] = {"config": _plain(info.config), "consumers": consumers}
    return Positions(streams)


# -- backup -------------------------------------------------------------------------


async def backup_database(db: Any, folder: Path, shown: Any = None) -> list[Document]:
    from bson import encode
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    (folder / "db").mkdir(parents=True, exist_ok=True)
    raw = CodecOptions(document_class=RawBSONDocument)
    collections = []
    for name in sorted(await db.list_collection_names()):
        if name.startswith("system."):
            continue
        collection = db.get_collection(name, codec_options=raw)
        total = await db[name].estimated_document_count()
        task = shown.add_task(f"database {name}", total=total) if shown is not None else None
        path = folder / "db" / f"{name}.bson.gz"
        digest = hashlib.sha256()
        count = 0
        with gzip.open(path, "wb") as out:
            async for doc in collection.find({}).sort("_id", 1):
                data = doc.raw if isinstance(doc, RawBSONDocument) else encode(doc)
                out.write(data)
                digest.update(data)
                count += 1
                if task is not None:
                    shown.advance(task)
        indexes = [
            {k: v for k, v in dict(spec).items() if k not in ("v", "ns")}
            async for spec in await db[name].list_indexes()
            if spec["name"] != "_id_"
        ]
        collections.append(
            {
                "name": name,
                "file": str(path.relative_to(folder)),
                "documents": count,
                "sha256": digest.hexdigest(),
                "indexes": [_index_json(spec) for spec in indexes],
            }
        )
    return collections


def _index_json(spec: Document) -> Document:
    return {**spec, "key": [[field, direction] for field, direction in spec["key"].items()]}


async def backup_streams(
    js: Any, positions: Positions, folder: Path, sealer: PiiSealer, shown: Any = None
) -> Any:
    from nats.js.errors import NotFoundError

    (folder / "streams").mkdir(parents=True, exist_ok=True)
    streams = []
    for name, saved in positions.streams.items():
        state = (await js.stream_info(name)).state
        total = state.messages
        task = shown.add_task(f"stream {name}", total=total) if shown is not None else None
        path = folder / "streams" / f"{name}.jsonl.gz"
        count = 0
        with gzip.open(path, "wt", encoding="utf-8") as out:
            seq = state.first_seq or 1
            while state.messages and seq <= state.last_seq:
                try:
                    msg = await js.get_msg(name, seq, next=True)
                except NotFoundError:
                    break  # aged out meanwhile, or nothing after `seq`
                if msg.seq is None or msg.seq > state.last_seq:
                    break
                line = {
                    "seq": msg.seq,
                    "time": msg.time,
                    "subject": msg.subject,
                    "headers": msg.headers or {},
                    "data_b64": base64.b64encode(msg.data or b"").decode("ascii"),
                }
                text = json.dumps(line, default=str)
                # The sequence in clear in front: it names what the sealed line is bound to.
                out.write(f"{msg.seq} {sealer.seal(text, _message_context(name, msg.seq))}\n")
                count += 1
                seq = msg.seq + 1
                if task is not None:
                    shown.advance(task)
        streams.append(
            {**saved, "name": name, "file": str(path.relative_to(folder)), "messages": count}
        )
    return streams


def _message_context(stream: str, seq: int) -> str:
    return f"backup/{stream}/{seq}"


async def backup(db: Any, js: Any, folder: Path, sealer: PiiSealer, shown: Any = None) -> Document:
    """Write a backup of `db` and of every stream `js` sees into the empty `folder`."""
    positions = await read_positions(js) if js is not None else Positions({})
    started = datetime.now(UTC)
    collections = await backup_database(db, folder, shown)
    streams = await backup_streams(js, positions, folder, sealer, shown) if js else []
    manifest = {
        "format": FORMAT,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "database": db.name,
        "collections": collections,
        "streams": streams,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# -- restore ------------------------------------------------------------------------


def read_manifest(folder: Path) -> Document:
    try:
        manifest: Document = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RestoreError(f"{folder} holds no readable {MANIFEST}: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise RestoreError(f"{folder}: not a backup of this format ({manifest.get('format')})")
    return manifest


async def _documents(path: Path, digest: Any) -> AsyncIterator[list[Any]]:
    from bson.raw_bson import RawBSONDocument

    batch: list[Any] = []
    with gzip.open(path, "rb") as data:
        while header := data.read(4):
            size = int.from_bytes(header, "little")
            raw = header + data.read(size - 4)
            digest.update(raw)
            batch.append(RawBSONDocument(raw))
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


async def restore_database(
    db: Any, folder: Path, manifest: Document, *, replace: bool, shown: Any = None
) -> dict[str, int]:
    from pymongo import IndexModel

    await check_database(db, manifest, replace=replace)
    restored: dict[str, int] = {}
    for entry in manifest["collections"]:
        name = entry["name"]
        collection = db[name]
        if replace:
            await collection.drop()
        task = shown.add_task(f"database {name}", total=entry["documents"]) if shown else None
        digest = hashlib.sha256()
        count = 0
        async for batch in _documents(folder / entry["file"], digest):
            await collection.insert_many(batch, ordered=False)
            count += len(batch)
            if task is not None:
                shown.advance(task, len(batch))
        if digest.hexdigest() != entry["sha256"] or count != entry["documents"]:
            raise RestoreError(f"{entry['file']} does not match the manifest: damaged backup")
        models = [
            IndexModel(
                [(field, direction) for field, direction in spec["key"]],
                **{k: v for k, v in spec.items() if k != "key"},
            )
            for spec in entry["indexes"]
        ]
        if models:
            await collection.create_indexes(models)
        restored[name] = count
    return restored


async def clear_streams(js: Any, manifest: Document, *, replace: bool) -> None:
    """Delete the backup's streams where they exist: empty ones, or all with `replace`."""
    from nats.js.errors import NotFoundError

    found = []
    for entry in manifest["streams"]:
        try:
            info = await js.stream_info(entry["name"])
        except NotFoundError:
            continue
        if not replace and info.state.messages:
            raise RestoreError(
                f"stream {entry['name']} is not empty: restore into a NATS without it "
                "or pass --replace"
            )
        found.append(entry["name"])
    for name in found:
        await js.delete_stream(name)


async def check_database(db: Any, manifest: Document, *, replace: bool) -> None:
    present = set(await db.list_collection_names())
    for entry in manifest["collections"]:
        name = entry["name"]
        if not replace and name in present and await db[name].estimated_document_count():
            raise RestoreError(
                f"collection {name} is not empty: restore into an empty database or pass --replace"
            )


async def restore_streams(
    js: Any, folder: Path, manifest: Document, opener: PiiOpener, shown: Any = None
) -> dict[str, int]:
    """Recreate the streams (cleared first, see `clear_streams`), their messages and
    their durable consumers, each at its first unacknowledged message."""
    from nats.js.api import ConsumerConfig, StreamConfig

    restored: dict[str, int] = {}
    for entry in manifest["streams"]:
        name = entry["name"]
        await js.add_stream(StreamConfig.from_response(dict(entry["config"])))
        task = shown.add_task(f"stream {name}", total=entry["messages"]) if shown else None
        new_seq: dict[int, int] = {}
        with gzip.open(folder / entry["file"], "rt", encoding="utf-8") as lines:
            for line in lines:
                seq, sealed = line.strip().split(" ", 1)
                msg = json.loads(opener.open(sealed, _message_context(name, int(seq))))
                headers = {
                    k: v for k, v in msg["headers"].items() if not k.startswith(_NOT_RESTORED)
                }
                data = base64.b64decode(msg["data_b64"])
                ack = await js.publish(msg["subject"], data, stream=name, headers=headers or None)
                if ack.duplicate:
                    # The same id published twice, further apart than the duplicate
                    # window: both copies were in the stream, both come back.
                    headers.pop("Nats-Msg-Id", None)
                    ack = await js.publish(
                        msg["subject"], data, stream=name, headers=headers or None
                    )
                new_seq[int(msg["seq"])] = int(ack.seq)
                if task is not None:
                    shown.advance(task)
        for consumer in entry["consumers"]:
            config = ConsumerConfig.from_response(dict(consumer["config"]))
            below = int(consumer["acknowledged_below"])
            done = [new for old, new in new_seq.items() if old < below]
            await js.add_consumer(name, config)
            await _acknowledge_up_to(js, name, config, max(done, default=0))
        restored[name] = len(new_seq)
    return restored


def _matches(subject: str, pattern: str) -> bool:
    """NATS subject matching: `*` is one token, `>` the rest."""
    tokens, wanted = subject.split("."), pattern.split(".")
    for i, part in enumerate(wanted):
        if part == ">":
            return len(tokens) > i
        if i >= len(tokens) or (part != "*" and part != tokens[i]):
            return False
    return len(tokens) == len(wanted)


async def _acknowledge_up_to(js: Any, stream: str, config: Any, last_done: int) -> None:
    """Move a restored durable consumer to where it was: acknowledge, in order, every
    message up to `last_done` that it had acknowledged before the backup.

    The consumer keeps the configuration its service declares (a changed deliver
    policy would be refused when the service declares it again), so its position is
    set the way it was reached: by acknowledging."""
    import nats.errors

    if not last_done or config.deliver_subject:
        return  # nothing was acknowledged, or a push consumer: it starts from its policy
    patterns = list(
        config.filter_subjects or ([config.filter_subject] if config.filter_subject else [">"])
    )
    owed = 0
    seq = 1
    while seq <= last_done:
        msg = await js.get_msg(stream, seq, next=True)
        if msg.seq is None or msg.seq > last_done:
            break
        owed += any(_matches(msg.subject, p) for p in patterns)
        seq = msg.seq + 1
    subscription = await js.pull_subscribe_bind(durable=config.durable_name, stream=stream)
    try:
        while owed:
            try:
                batch = await subscription.fetch(min(owed, BATCH), timeout=5)
            except nats.errors.TimeoutError:
                raise RestoreError(f"{stream}/{config.durable_name}: messages missing") from None
            for msg in batch:
                if msg.metadata.sequence.stream > last_done:
                    raise RestoreError(f"{stream}/{config.durable_name}: out of order")
                await msg.ack_sync()
                owed -= 1
    finally:
        await subscription.unsubscribe()
