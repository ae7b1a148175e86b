"""Where accounts, failed logins and sessions are kept, and what admins do with accounts.

`AccountStore` is what the use cases need; `MongoAccounts` keeps it in the
database (`accounts`, `login_failures`, and the session tokens in
`api_tokens`), `InMemoryAccounts` in memory for unit tests. The administration
functions (`create_account`, `set_disabled`, `reset_password`) are the one path
for intake's HTTP API and the `lapor accounts` command alike;
`ensure_admin_account` gives `make run` its first admin.

Disabling an account or resetting its password revokes all its sessions at once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.accounts import (
    ACCOUNTS_COLLECTION,
    FAILURES_COLLECTION,
    AccountError,
    check_password,
    check_username,
    hash_password,
    new_account,
    new_password,
)
from lapor.tokens import TOKENS_COLLECTION

Document = dict[str, Any]
SESSION = "session"  # the `kind` of a token record made by a login
# The `kind` of every failed-login record: the equality the purge's date range follows,
# which is what FerretDB (our build) needs to answer that range from the index.
LOGIN_FAILURE = "login"


class AccountStore(Protocol):
    async def get(self, username: str) -> Document | None: ...

    async def insert(self, doc: Document) -> bool:
        """Store a new account; False when the username is taken."""
        ...

    async def all(self) -> list[Document]:
        """Every account, by username."""
        ...

    async def update(self, username: str, fields: Document) -> Document | None:
        """Set `fields`; the account after, None when there is none."""
        ...

    async def add_failure(self, record: Document) -> None: ...

    async def recent_failures(self, key: str, value: str, since: datetime) -> list[datetime]:
        """Times of failures whose `key` (username or client) is `value`, from `since` on."""
        ...

    async def add_session(self, record: Document) -> None: ...

    async def revoke_sessions(
        self, username: str, now: datetime, keep_token_id: str | None = None
    ) -> int:
        """Revoke the account's sessions (all but `keep_token_id`); how many."""
        ...

    async def lift_password_change(self, username: str, token_id: str) -> None:
        """The account's session `token_id` no longer waits for a password change."""
        ...

    async def purge_sessions(self, expired_before: datetime, batch: int) -> int:
        """Delete up to `batch` sessions that expired before then; how many."""
        ...

    async def purge_failures(self, before: datetime, batch: int) -> int:
        """Delete up to `batch` failed-login records older than `before`; how many."""
        ...


class MongoAccounts:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.accounts = db[ACCOUNTS_COLLECTION]
        self.failures = db[FAILURES_COLLECTION]
        self.tokens = db[TOKENS_COLLECTION]

    async def ensure_indexes(self) -> None:
        await self.failures.create_index([("username", ASCENDING), ("at", DESCENDING)])
        await self.failures.create_index([("client", ASCENDING), ("at", DESCENDING)])
        await self.tokens.create_index([("account", ASCENDING), ("kind", ASCENDING)])
        # The purge's ranges (FerretDB v1 has no TTL index to expire them by itself).
        await self.failures.create_index([("kind", ASCENDING), ("at", ASCENDING)])
        await self.tokens.create_index([("kind", ASCENDING), ("expires_at", ASCENDING)])

    async def get(self, username: str) -> Document | None:
        return await self.accounts.find_one({"_id": username})

    async def insert(self, doc: Document) -> bool:
        try:
            await self.accounts.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def all(self) -> list[Document]:
        return await self.accounts.find({}).sort("_id", ASCENDING).to_list(None)

    async def update(self, username: str, fields: Document) -> Document | None:
        return await self.accounts.find_one_and_update(
            {"_id": username}, {"$set": fields}, return_document=ReturnDocument.AFTER
        )

    async def add_failure(self, record: Document) -> None:
        await self.failures.insert_one(record | {"kind": LOGIN_FAILURE})

    async def recent_failures(self, key: str, value: str, since: datetime) -> list[datetime]:
        cursor = self.failures.find({key: value, "at": {"$gte": since}}, {"at": 1, "_id": 0})
        return [_aware(doc["at"]) async for doc in cursor.sort("at", DESCENDING).limit(100)]

    async def add_session(self, record: Document) -> None:
        await self.tokens.insert_one(record)

    async def revoke_sessions(
        self, username: str, now: datetime, keep_token_id: str | None = None
    ) -> int:
        query: Document = {"account": username, "kind": SESSION, "revoked_at": None}
        if keep_token_id is not None:
            query["id"] = {"$ne": keep_token_id}
        result = await self.tokens.update_many(query, {"$set": {"revoked_at": now}})
        return result.modified_count

    async def lift_password_change(self, username: str, token_id: str) -> None:
        await self.tokens.update_one(
            {"account": username, "kind": SESSION, "id": token_id},
            {"$set": {"must_change_password": False}},
        )

    async def purge_sessions(self, expired_before: datetime, batch: int) -> int:
        # Machine tokens stay after expiry: admins see them listed as expired.
        query = {"kind": SESSION, "expires_at": {"$lt": expired_before}}
        return await _delete_batch(self.tokens, query, "expires_at", batch)

    async def purge_failures(self, before: datetime, batch: int) -> int:
        query = {"kind": LOGIN_FAILURE, "at": {"$lt": before}}
        return await _delete_batch(self.failures, query, "at", batch)


class InMemoryAccounts:
    """The store for unit tests."""

    def __init__(self) -> None:
        self.accounts: dict[str, Document] = {}
        self.failures: list[Document] = []
        self.sessions: list[Document] = []

    async def get(self, username: str) -> Document | None:
        found = self.accounts.get(username)
        return dict(found) if found else None

    async def insert(self, doc: Document) -> bool:
        if doc["_id"] in self.accounts:
            return False
        self.accounts[doc["_id"]] = dict(doc)
        return True

    async def all(self) -> list[Document]:
        return [dict(self.accounts[k]) for k in sorted(self.accounts)]

    async def update(self, username: str, fields: Document) -> Document | None:
        if username not in self.accounts:
            return None
        self.accounts[username].update(fields)
        return dict(self.accounts[username])

    async def add_failure(self, record: Document) -> None:
        self.failures.append(dict(record))

    async def recent_failures(self, key: str, value: str, since: datetime) -> list[datetime]:
        return [f["at"] for f in self.failures if f.get(key) == value and f["at"] >= since]

    async def add_session(self, record: Document) -> None:
        self.sessions.append(dict(record))

    async def revoke_sessions(
        self, username: str, now: datetime, keep_token_id: str | None = None
    ) -> int:
        revoked = 0
        for session in self.sessions:
            if session["account"] == username and session.get("revoked_at") is None:
                if session["id"] != keep_token_id:
                    session["revoked_at"] = now
                    revoked += 1
        return revoked

    async def lift_password_change(self, username: str, token_id: str) -> None:
        for session in self.sessions:
            if session["account"] == username and session["id"] == token_id:
                session["must_change_password"] = False

    async def purge_sessions(self, expired_before: datetime, batch: int) -> int:
        gone = [s for s in self.sessions if s["expires_at"] < expired_before][:batch]
        self.sessions = [s for s in self.sessions if s not in gone]
        return len(gone)

    async def purge_failures(self, before: datetime, batch: int) -> int:
        gone = [f for f in self.failures if f["at"] < before][:batch]
        self.failures = [f for f in self.failures if f not in gone]
        return len(gone)


async def _delete_batch(
    collection: AsyncCollection[Document], query: Document, oldest_by: str, batch: int
) -> int:
    """Delete at most `batch` documents matching `query`, oldest first: one bounded
    read of ids over the query's index, then one delete of those ids (a plain
    `delete_many` has no limit, and one huge delete would hold the database)."""
    cursor = collection.find(query, {"_id": 1}).sort(oldest_by, ASCENDING).limit(batch)
    ids = [doc["_id"] async for doc in cursor]
    if not ids:
        return 0
    # The query again: a document changed since it was read stays.
    result = await collection.delete_many({"_id": {"$in": ids}, **query})
    return result.deleted_count


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def create_account(
    store: AccountStore,
    *,
    username: str,
    name: str,
    role: str,
    agency: str | None,
    region: str,
    created_by: str,
    now: datetime,
    agencies: Collection[str],
) -> tuple[Document, str]:
    """A new account and its one-time password (shown once, stored only hashed)."""
    password = new_password()
    doc = new_account(
        username=username,
        name=name,
        role=role,
        agency=agency,
        region=region,
        password=password,
        created_by=created_by,
        now=now,
        agencies=agencies,
    )
    if not await store.insert(doc):
        raise AccountError(f"the username {doc['_id']!r} is taken", status=409)
    return doc, password


async def _existing(store: AccountStore, username: str) -> str:
    name = check_username(username)
    if await store.get(name) is None:
        raise AccountError(f"no account {name!r}", status=404)
    return name


async def set_disabled(
    store: AccountStore, username: str, disabled: bool, now: datetime
) -> Document:
    """Disable (its sessions end at once) or enable an account; a repeat keeps the
    first time."""
    name = await _existing(store, username)
    current = await store.get(name) or {}
    if disabled:
        # First the account, then its sessions: a login racing with this either sees
        # the account disabled or has its session revoked here (see sessions.login).
        doc = current
        if current.get("disabled_at") is None:
            doc = await store.update(name, {"disabled_at": now}) or current
        await store.revoke_sessions(name, now)
        return doc
    return await store.update(name, {"disabled_at": None}) or current


async def reset_password(store: AccountStore, username: str, now: datetime) -> tuple[Document, str]:
    """A new one-time password (to be changed at the next login); its sessions end."""
    name = await _existing(store, username)
    password = new_password()
    doc = await store.update(
        name,
        {
            "password_hash": hash_password(password),
            "password_changed_at": now,
            "must_change_password": True,
        },
    )
    await store.revoke_sessions(name, now)
    if doc is None:
        raise AccountError(f"no account {name!r}", status=404)
    return doc, password


async def ensure_admin_account(
    db: AsyncDatabase[Document],
    username: str,
    password: str,
    *,
    name: str = "Admin Diskominfo",
    region: str = "banjar",
    now: datetime | None = None,
) -> bool:
    """Create the admin account `username` with `password` if there is none (a
    local stack's first login); leaves an existing account as it is. True when
    created. The password was chosen by the operator: no change is demanded."""
    now = now or datetime.now(UTC)
    store = MongoAccounts(db)
    if await store.get(check_username(username)) is not None:
        return False
    doc = new_account(
        username=username,
        name=name,
        role="admin",
        agency=None,
        region=region,
        password=check_password(password),
        created_by="system",
        now=now,
        agencies=(),
        must_change_password=False,
    )
    return await store.insert(doc)
