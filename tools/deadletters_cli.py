"""The operator's commands on dead letters: `lapor dlq list|replay|resolve`.

`list` shows the records (phone numbers masked); `replay` publishes a stored
payload again on its original subject with a new `Nats-Msg-Id` and marks the
record replayed; `resolve` settles one an operator decided not to replay, with
the reason. A record neither replayed nor resolved is pending: the
`lapor_dead_letters` gauge counts those, and `LaporDeadLetters` fires while
there are any. Payloads open only with the private `LAPOR_PII_KEY`, which the
operator holds. Mounted by the `lapor` command line (tools.cli), which fills in
what the command line and the environment leave open from the running `make run`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import typer

from lapor.runtime.dead_letters import Document
from lapor.runtime.pii import PiiOpener
from services.deadletters import domain, usecases
from services.deadletters.handlers import jetstream_publisher
from services.deadletters.repository import DeadLetterStore
from tools.terminal import DEFAULT_MONGO, DEFAULT_NATS, PiiOldKeys, env_option

dlq_app = typer.Typer(help="Dead letters: messages no handler could process.")

# Their URLs carry passwords, so help never prints the default.
_FROM_STACK = "default: the running `make run`'s, else "
OperatorNatsUrl = Annotated[
    str, env_option("--nats", "NATS_URL", f"NATS server URL ({_FROM_STACK}{DEFAULT_NATS})")
]
OperatorMongoUrl = Annotated[
    str, env_option("--mongo", "MONGO_URL", f"MongoDB URL ({_FROM_STACK}{DEFAULT_MONGO})")
]
OperatorMongoDb = Annotated[str, env_option("--db", "MONGO_DB", f"Database ({_FROM_STACK}lapor)")]
PiiKey = Annotated[
    str,
    env_option(
        "--pii-key",
        "LAPOR_PII_KEY",
        "The private personal-data key, which opens stored payloads "
        "(default: the running `make run`'s)",
    ),
]
# Records a command reads or replays at a time: a page of `dlq list`, a batch of
# `dlq replay --all`.
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
    from tools.terminal import err, run, with_pii_keys

    opener = with_pii_keys(PiiOpener, pii_key, pii_old_keys)
    records, more = run(
        _list(mongo_url, mongo_db, pending, opener, limit=limit, after=after), mongo_url=mongo_url
    )
    views = [domain.public_view(record) for record in records]
    if as_json:
        print(json.dumps(views, indent=2, ensure_ascii=False, default=str))
    else:
        _print_table(views)
    if more:
        # On standard error: the JSON on standard output stays one valid array.
        err.print(f"{more} more, use --after {views[-1]['id']}", markup=False, soft_wrap=True)


def _print_table(views: list[Document]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = ("id", "reason", "consumer", "subject", "tries", "stored", "replayed", "resolved")
    table = Table(*columns, "error")
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


async def _list(
    mongo_url: str,
    mongo_db: str,
    pending: bool,
    opener: PiiOpener,
    *,
    limit: int = PAGE,
    after: str | None = None,
) -> tuple[list[Document], int]:
    from tools.terminal import fail, mongo_client

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
    from tools.terminal import run, with_pii_keys

    if (record_id is None) == (not replay_all):
        raise typer.BadParameter("give one dead-letter id or --all")
    opener = with_pii_keys(PiiOpener, pii_key, pii_old_keys)
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
    from tools.terminal import connect_nats, mongo_client

    # NATS first: a replay that cannot publish should say so before reading anything.
    nc = None if dry_run else await connect_nats(nats_url)
    client = mongo_client(mongo_url)
    store = DeadLetterStore(client[mongo_db], opener=opener)
    try:
        batches, total = await _chosen(store, record_id)
        if nc is None:
            shown = 0
            async for batch in batches:
                for record in batch:
                    print(f"would replay {record['_id']} on {record.get('subject')}")
                shown += len(batch)
            return shown, 0
        return await _replay_records(jetstream_publisher(nc.jetstream()), store, batches, total)
    finally:
        if nc is not None:
            await nc.close()
        await client.close()


async def _chosen(
    store: DeadLetterStore, record_id: str | None
) -> tuple[AsyncIterator[list[Document]], int]:
    """The records to replay, in batches, and how many there are."""
    from tools.terminal import fail

    if record_id is not None:
        found = await store.get(record_id)
        if found is None:
            fail(f"no dead letter {record_id}")
        return _one(found), 1
    # What waits now; a replay that fails again comes back as a new record, stored
    # later, and is not replayed a second time in this run.
    until = domain.now()
    total = await store.count(pending_only=True, until=until)
    return _pending_batches(store, until), total


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


async def _replay_records(
    publish: usecases.Publisher,
    store: DeadLetterStore,
    batches: AsyncIterator[list[Document]],
    total: int,
) -> tuple[int, int]:
    from tools.terminal import err, progress

    done = failed = 0
    with progress() as shown:
        task = shown.add_task("replaying dead letters", total=total)
        async for batch in batches:
            for record in batch:
                try:
                    msg_id = await usecases.replay_one(publish, store, record)
                except Exception as exc:
                    err.print(f"{record['_id']}: not replayed ({exc})", markup=False)
                    failed += 1
                else:
                    print(f"replayed {record['_id']} on {record['subject']} as {msg_id}")
                    done += 1
                shown.advance(task)
    err.print(f"{done} replayed, {failed} failed", markup=False)
    return done, failed


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
    from tools.terminal import fail, run

    if not reason.strip():
        raise typer.BadParameter("say why it is not replayed", param_hint="--reason")
    resolving = _resolve(mongo_url, mongo_db, record_id, reason, _operator())
    outcome = run(resolving, mongo_url=mongo_url)
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
    from tools.terminal import mongo_client

    client = mongo_client(mongo_url)
    try:
        return await usecases.resolve(DeadLetterStore(client[mongo_db]), record_id, reason, by)
    finally:
        await client.close()


if __name__ == "__main__":
    dlq_app()
