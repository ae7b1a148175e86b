"""Per-key locks inside one process.

Only for order and efficiency, never for correctness: intake judges one
sender's messages one after another (limits and repeats are about order, and a
burst arrives in one batch), intake changes one complaint at a time (the
routing and the deadlines, heard at once, need not race for one version), and
SLA replans one complaint at a time instead of redoing each other's work.
What must hold across replicas holds in the database: version preconditions
in atomic updates, and unique keys.
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
