"""Per-key locks inside one process.

FerretDB v1 loses concurrent updates to one document, and a read-decide-write
on one complaint must not interleave with another; so each service serialises
its own work per complaint (or sender, or notification). Replicas rely on the
database's unique keys instead.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLock:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
