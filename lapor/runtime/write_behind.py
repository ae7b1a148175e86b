"""Writes that may follow a moment after the change they complete, sent together.

Some writes only tidy up after a change that is already stored and safe:
clearing an announcement after its PubAck, clearing a complaint's worklist mark
after its entry was written. Each would cost a database command per complaint;
queued here, they go out every `every_s` as one `update` command per collection
(at most `per_command` statements each: a larger one hung our FerretDB build).

Nothing depends on them being done at once, and a crash that loses the queue
loses nothing either: what they would have cleared is found again by the sweep
that covers that crash anyway (the outbox sweeper republishes, and JetStream
drops the copy by its message id; the worklist sweep re-lists the complaint).

A statement may name what it is for (`replaces`): one queued later for the same
purpose takes its place, so a document written three times in a second costs
the database one tidying statement, not three.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lapor.runtime.db import DUPLICATE_KEY
from lapor.runtime.periodic import Stop, start_flushing

log = logging.getLogger(__name__)

Document = dict[str, Any]
Done = Callable[[], None]


@dataclass
class _Queued:
    statement: Document
    dones: list[Done] = field(default_factory=list)
    purpose: Hashable | None = None


def _done(queued: list[_Queued]) -> None:
    for item in queued:
        for done in item.dones:
            done()


class WriteBehind:
    """A queue of update statements per collection, flushed in order."""

    def __init__(
        self, db: AsyncDatabase[Document], every_s: float = 1.0, per_command: int = 32
    ) -> None:
        self.db = db
        self.every_s = every_s
        self.per_command = per_command
        self._queue: dict[str, list[_Queued]] = {}
        self._by_purpose: dict[tuple[str, Hashable], _Queued] = {}
        self._flushing = asyncio.Lock()

    def update(
        self,
        collection: str,
        query: Document,
        change: Document,
        *,
        upsert: bool = False,
        done: Done | None = None,
        replaces: Hashable | None = None,
    ) -> None:
        """Queue one update; `done` runs once it was applied (not if it failed).

        With `replaces`, a statement still queued for the same purpose in `collection`
        is replaced by this one, in its place in the order: the caller says that this
        statement does all the earlier one would have (a newer version's tidying).
        The earlier one's `done` then runs when this one is applied."""
        statement = {"q": query, "u": change, "upsert": upsert, "multi": False}
        dones = [done] if done is not None else []
        earlier = self._by_purpose.get((collection, replaces)) if replaces is not None else None
        if earlier is not None:
            earlier.statement = statement
            earlier.dones += dones
            return
        queued = _Queued(statement, dones, replaces)
        self._queue.setdefault(collection, []).append(queued)
        if replaces is not None:
            self._by_purpose[(collection, replaces)] = queued

    def pending(self) -> int:
        return sum(len(statements) for statements in self._queue.values())

    async def flush(self) -> int:
        """Send what is queued; how many statements were sent. A failed command puts
        what was not sent back at the front of the queue, in order."""
        async with self._flushing:
            taken, self._queue, self._by_purpose = self._queue, {}, {}
            sent = 0
            try:
                for collection, statements in taken.items():
                    while statements:
                        batch = statements[: self.per_command]
                        if await self._send(collection, [q.statement for q in batch]):
                            del statements[: len(batch)]
                            _done(batch)
                        else:
                            await self._send_each(collection, statements, len(batch))
                        sent += len(batch)
            except Exception:
                self._requeue(taken)
                raise
            return sent

    async def _send(self, collection: str, statements: list[Document]) -> bool:
        """Whether every statement applied. In order: a later statement may depend on an
        earlier one for the same document. Any error (a duplicate key too) stops the
        rest of the command: `_send_each` then learns, and logs, which one it was."""
        reply = await self.db.command(
            {"update": collection, "updates": statements, "ordered": True}
        )
        return not reply.get("writeErrors")

    async def _send_each(self, collection: str, statements: list[_Queued], count: int) -> None:
        """The first `count` statements again, one command each, to learn which applied:
        FerretDB v1 names the first statement (index 0) whatever failed, and stops at the
        failure even unordered. Sent twice, a statement finds its work done (each is
        conditional). An upsert that meets a duplicate key found the document newer
        than itself: done. One that fails is dropped: none is needed for correctness
        (see above), what it would have done is left to the sweep."""
        for _ in range(count):
            queued = statements[0]
            reply = await self.db.command(
                {"update": collection, "updates": [queued.statement], "ordered": True}
            )
            del statements[0]
            errors = reply.get("writeErrors") or []
            if all(error.get("code") == DUPLICATE_KEY for error in errors):
                _done([queued])
            else:
                log.warning(
                    "a deferred write to %s failed: %s", collection, errors[0].get("errmsg")
                )

    def _requeue(self, unsent: dict[str, list[_Queued]]) -> None:
        """Back at the front, in order; one replaced meanwhile by a newer statement for
        the same purpose leaves its place and its `done` to that one."""
        for collection, statements in unsent.items():
            kept: list[_Queued] = []
            for queued in statements:
                newer = (
                    self._by_purpose.get((collection, queued.purpose))
                    if queued.purpose is not None
                    else None
                )
                if newer is not None:
                    newer.dones[:0] = queued.dones
                    continue
                kept.append(queued)
                if queued.purpose is not None:
                    self._by_purpose[(collection, queued.purpose)] = queued
            if kept:
                self._queue[collection] = [*kept, *self._queue.get(collection, [])]

    def start(self) -> Stop:
        """Flush every `every_s` in one task; returns the stop coroutine (a last flush)."""
        return start_flushing(
            "lapor-write-behind", self.every_s, self.flush, "deferred writes not flushed"
        )
