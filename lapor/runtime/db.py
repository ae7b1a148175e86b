"""MongoDB access through pymongo's async API (works against MongoDB and FerretDB v1)."""

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from lapor.runtime.settings import InfraSettings

Document = dict


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


async def database_ready(db: AsyncDatabase[Document]) -> bool:
    try:
        await db.command("ping")
    except Exception:
        return False
    return True
