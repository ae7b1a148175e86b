"""The lease that orders hotspot grouping across replicas (see `MongoLease`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

log = logging.getLogger(__name__)

Document = dict[str, Any]


class Lease(Protocol):
    def hold(self) -> AbstractAsyncContextManager[None]:
        """Exclusive across every replica while held."""

    @property
    def tenure(self) -> int:
        """Which holding of the lease by this process this is: the same number in two
        blocks means no other replica held it in between (this process kept it, or
        gave it back and took it again before anyone else)."""


_EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)


class MongoLease:
    """One named lease in the database, held by one replica at a time.

    Taken by a findAndModify that matches the lease only when it is free or
    expired, with upsert: a held lease does not match, the upsert's insert then
    meets the `_id` already there (duplicate key) and the taker waits and tries
    again. FerretDB applies findAndModify atomically (ferretdb/patches/0004), as
    MongoDB does. A replica that dies holding it frees it after `ttl`; hotspot
    writes stay conditional on the version read, so a holder that outlived its
    lease still cannot overwrite another's change (VersionConflict).

    Taking and giving it back for every event would cost two commands each: a
    replica keeps it while it is in use and `linger_s` longer, so a busy replica
    enters a block without a command, and renews it (one update, conditional on
    still being its owner) when less than half of `ttl` is left. After `turn_s` of
    holding it, it gives it back when a block ends and waits a few polls before
    taking it again: the other replicas, which poll, get their turn.
    """

    def __init__(
        self,
        collection: AsyncCollection[Document],
        name: str,
        ttl: timedelta = timedelta(seconds=30),
        poll_s: float = 0.02,
        linger_s: float = 0.25,
        turn_s: float | None = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collection = collection
        self.name = name
        self.ttl = ttl
        self.poll_s = poll_s
        self.linger_s = linger_s
        self.turn_s = turn_s
        self.clock = clock
        self.owner = secrets.token_hex(8)
        # This process's blocks, one at a time (its handlers share the lease).
        self._mutex = asyncio.Lock()
        # While held: until when (this process's clock) and since when.
        self._valid_until: float | None = None
        self._taken_at = 0.0
        self._last_used = 0.0
        self._not_before = 0.0
        self._releaser: asyncio.Task[None] | None = None
        self._tenure = 0

    async def _take(self, owner: str) -> bool:
        now = datetime.now(UTC)
        try:
            before = await self.collection.find_one_and_update(
                {"_id": self.name, "until": {"$lt": now}},
                {"$set": {"owner": owner, "until": now + self.ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        # The lease as it was: its last holder was this process, or another one was.
        if before is None or before.get("owner") != owner:
            self._tenure += 1
        return True

    async def _renew(self) -> bool:
        now = datetime.now(UTC)
        done = await self.collection.update_one(
            {"_id": self.name, "owner": self.owner}, {"$set": {"until": now + self.ttl}}
        )
        return done.matched_count == 1

    async def _release(self) -> None:
        self._valid_until = None
        await self.collection.update_one(
            {"_id": self.name, "owner": self.owner}, {"$set": {"until": _EXPIRED}}
        )

    def held(self) -> bool:
        return self._valid_until is not None and self.clock() < self._valid_until

    async def _acquire(self) -> None:
        ttl_s = self.ttl.total_seconds()
        if self._valid_until is not None:
            # Measured from before the command that took or renewed it: no later than
            # the `until` the other replicas compare with.
            left = self._valid_until - self.clock()
            if left > ttl_s / 2:
                return
            started = self.clock()
            if left > 0 and await self._renew():
                self._valid_until = started + ttl_s
                return
            self._valid_until = None  # expired: another replica may hold it now
        if (wait := self._not_before - self.clock()) > 0:
            await asyncio.sleep(wait)
        # Held elsewhere for a few milliseconds as a rule: poll, spread out (no
        # notification crosses replicas; the jitter is not a secret).
        while True:
            started = self.clock()
            if await self._take(self.owner):
                break
            await asyncio.sleep(self.poll_s * (1 + random.random()))  # noqa: S311
        self._valid_until = started + ttl_s
        self._taken_at = started

    @property
    def tenure(self) -> int:
        return self._tenure

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._mutex:
            await self._acquire()
            try:
                yield
            finally:
                self._last_used = self.clock()
                if self.turn_s is not None and self._last_used - self._taken_at >= self.turn_s:
                    self._not_before = self.clock() + 3 * self.poll_s
                    await self._release()
                elif self._releaser is None or self._releaser.done():
                    self._releaser = asyncio.create_task(
                        self._release_when_idle(), name=f"lease-{self.name}-linger"
                    )

    async def _release_when_idle(self) -> None:
        try:
            await self._linger()
        except Exception as exc:  # the database away: the lease expires after its ttl
            log.warning("lease %s not given back: %s", self.name, type(exc).__name__)

    async def _linger(self) -> None:
        while True:
            if (wait := self._last_used + self.linger_s - self.clock()) > 0:
                await asyncio.sleep(wait)
                continue
            async with self._mutex:
                if self._valid_until is None:
                    return
                if self.clock() - self._last_used < self.linger_s:
                    continue  # used meanwhile
                await self._release()
                return

    async def close(self) -> None:
        """Give the lease back now if this replica holds it (a stopping service)."""
        if self._releaser is not None:
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
        async with self._mutex:
            # Also when a cancelled release may not have reached the database; it
            # matches nothing unless this replica is the owner.
            await self._release()


class InMemoryLease:
    """The lease for unit tests: one for every worker that shares it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.holders = 0
        self.most_holders = 0
        self.holdings = 0

    @property
    def tenure(self) -> int:
        # Shared by every worker: another may have held it between two blocks.
        return self.holdings

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self.lock:
            self.holdings += 1
            self.holders += 1
            self.most_holders = max(self.most_holders, self.holders)
            try:
                yield
            finally:
                self.holders -= 1
