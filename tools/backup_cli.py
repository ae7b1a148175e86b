"""`lapor backup` and `lapor restore` on the command line; what they do is
`tools.backup`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lapor.runtime.pii import PiiKeyError, PiiOpener, PiiSealer
from tools.backup import (
    Document,
    RestoreError,
    backup,
    check_database,
    clear_streams,
    read_manifest,
    restore_database,
    restore_streams,
)
from tools.terminal import DEFAULT_MONGO, DEFAULT_NATS, MongoDb, PiiOldKeys, env_option
from tools.terminal import OperatorMongoUrl as MongoUrl

NatsUrl = Annotated[
    str,
    env_option(
        "--nats",
        "NATS_URL",
        "NATS URL, as the admin (default: the running `make run`'s, else nats://127.0.0.1:4222)",
    ),
]
NoStreams = Annotated[
    bool, typer.Option("--no-streams", help="The database only, not the JetStream streams")
]
PiiKey = Annotated[
    str,
    env_option(
        "--pii-key",
        "LAPOR_PII_KEY",
        "The private personal-data key: opens the stream copy on restore "
        "(default: the running `make run`'s)",
    ),
]
PiiPublicKey = Annotated[
    str,
    env_option(
        "--pii-public-key",
        "LAPOR_PII_PUBLIC_KEY",
        "Seals the stream copy (default: the public half of LAPOR_PII_KEY)",
    ),
]


def _sealer(public_key: str, key: str) -> PiiSealer:
    try:
        if public_key:
            return PiiSealer(public_key)
        if key:
            return PiiOpener(key).sealer()
    except PiiKeyError as exc:
        raise typer.BadParameter(str(exc), param_hint="LAPOR_PII_PUBLIC_KEY") from None
    raise typer.BadParameter(
        "set LAPOR_PII_PUBLIC_KEY (or LAPOR_PII_KEY): it seals the stream copy",
        param_hint="LAPOR_PII_PUBLIC_KEY",
    )


def _opener(key: str, old_keys: str) -> PiiOpener:
    if not key:
        raise typer.BadParameter(
            "set LAPOR_PII_KEY (or --pii-key): it opens the stream copy", param_hint="LAPOR_PII_KEY"
        )
    try:
        return PiiOpener(key, tuple(k.strip() for k in old_keys.split(",") if k.strip()))
    except PiiKeyError as exc:
        raise typer.BadParameter(str(exc), param_hint="LAPOR_PII_KEY") from None


def backup_command(
    folder: Annotated[Path, typer.Argument(help="New or empty folder to write the backup to")],
    mongo_url: MongoUrl = DEFAULT_MONGO,
    mongo_db: MongoDb = "lapor",
    nats_url: NatsUrl = DEFAULT_NATS,
    no_streams: NoStreams = False,
    pii_public_key: PiiPublicKey = "",
    pii_key: PiiKey = "",
) -> None:
    """Back up the database and the JetStream streams into FOLDER (see README,
    "Backup and restore")."""
    from tools.terminal import fail, run

    sealer = _sealer(pii_public_key, pii_key)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        fail(f"{folder} exists and is not an empty folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {folder}: {exc.strerror or exc}")
    manifest = run(
        _backup(mongo_url, mongo_db, None if no_streams else nats_url, folder, sealer),
        mongo_url=mongo_url,
        nats_url=nats_url,
    )
    documents = sum(c["documents"] for c in manifest["collections"])
    messages = sum(s["messages"] for s in manifest["streams"])
    print(
        f"backed up {documents} documents in {len(manifest['collections'])} collections and "
        f"{messages} messages in {len(manifest['streams'])} streams to {folder}"
    )


async def _backup(
    mongo_url: str, mongo_db: str, nats_url: str | None, folder: Path, sealer: PiiSealer
) -> Document:
    from tools.terminal import connect_nats, mongo_client, progress

    client = mongo_client(mongo_url, "lapor-backup")
    nc = await connect_nats(nats_url, "lapor-backup") if nats_url else None
    try:
        # Fail at once, not after the streams' positions were read, when the database is away.
        await client[mongo_db].command("ping")
        with progress() as shown:
            js = nc.jetstream() if nc else None
            return await backup(client[mongo_db], js, folder, sealer, shown)
    finally:
        if nc is not None:
            await nc.close()
        await client.close()


def restore_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by `lapor backup`")],
    mongo_url: MongoUrl = DEFAULT_MONGO,
    mongo_db: MongoDb = "lapor",
    nats_url: NatsUrl = DEFAULT_NATS,
    no_streams: NoStreams = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Drop the collections and streams that are there first"),
    ] = False,
    pii_key: PiiKey = "",
    pii_old_keys: PiiOldKeys = "",
) -> None:
    """Restore a backup into an empty database and NATS; then start the services, which
    catch up on what fell due meanwhile."""
    from tools.terminal import fail, run

    opener = None if no_streams else _opener(pii_key, pii_old_keys)
    try:
        manifest = read_manifest(folder)
    except RestoreError as exc:
        fail(str(exc))
    documents, messages = run(
        _restore(
            mongo_url,
            mongo_db,
            None if no_streams else nats_url,
            folder,
            manifest,
            replace,
            opener,
        ),
        mongo_url=mongo_url,
        nats_url=nats_url,
    )
    print(
        f"restored {documents} documents and {messages} messages "
        f"from the backup of {manifest['started_at']}"
    )


async def _restore(
    mongo_url: str,
    mongo_db: str,
    nats_url: str | None,
    folder: Path,
    manifest: Document,
    replace: bool,
    opener: PiiOpener | None,
) -> tuple[int, int]:
    from tools.terminal import connect_nats, fail, mongo_client, progress

    client = mongo_client(mongo_url, "lapor-restore")
    nc = await connect_nats(nats_url, "lapor-restore") if nats_url and opener else None
    try:
        await client[mongo_db].command("ping")
        with progress() as shown:
            js = nc.jetstream() if nc is not None else None
            try:
                # Refuse before anything is written: a half-done restore helps nobody.
                await check_database(client[mongo_db], manifest, replace=replace)
                if js is not None:
                    await clear_streams(js, manifest, replace=replace)
                documents = await restore_database(
                    client[mongo_db], folder, manifest, replace=replace, shown=shown
                )
                messages = (
                    await restore_streams(js, folder, manifest, opener, shown)
                    if js is not None and opener is not None
                    else {}
                )
            except (RestoreError, PiiKeyError, OSError) as exc:
                fail(str(exc))
        return sum(documents.values()), sum(messages.values())
    finally:
        if nc is not None:
            await nc.close()
        await client.close()
