"""MongoDB access through pymongo's async API (works against MongoDB and FerretDB v1)."""

import asyncio
from datetime import datetime

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from lapor.runtime.settings import InfraSettings

Document = dict
# MongoDB's duplicate-key error: the document is there already.
DUPLICATE_KEY = 11000


def refused_as_duplicates(error: BulkWriteError) -> set[int]:
    """The positions of an unordered `insert_many` that were there already; raises
    `error` if anything else failed. (FerretDB v1 names inserts rightly, unlike
    updates: see `lapor.runtime.write_behind`.)"""
    errors = error.details.get("writeErrors") or []
    if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise error
    return {int(e["index"]) for e in errors}


def connect_database(
    infra: InfraSettings, app_name: str
) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    # The client connects lazily and reconnects by itself; a short server
    # selection timeout makes a missing database visible in /readyz quickly.
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongo_url,
        appname=app_name,
        serverSelectionTimeoutMS=5_000,
        tz_aware=True,
        uuidRepresentation="standard",
    )
    return client, client[infra.mongo_db]


def half_open(start: datetime | None, end: datetime | None) -> Document | None:
    """The condition of a value in [start, end), either bound left open when None;
    None when both are."""
    period: Document = {}
    if start is not None:
        period["$gte"] = start
    if end is not None:
        period["$lt"] = end
    return period or None


async def database_ready(db: AsyncDatabase[Document], timeout_s: float = 6.0) -> bool:
    # Bounded here too: /readyz must answer "not ready" even if the client itself
    # stopped answering (its server selection alone gives up after 5 s).
    try:
        await asyncio.wait_for(db.command("ping"), timeout_s)
    except Exception:
        return False
    return True
