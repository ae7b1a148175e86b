"""Which version an outbox's queued clear is aimed at (the statements it queues; no
database: the deferred writes' commands are only recorded)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lapor.runtime.outbox import Outbox
from lapor.runtime.write_behind import WriteBehind
from tests.outbox_fakes import Noted, Publisher


class Recorded:
    """A database that answers every command and keeps it."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.commands.append(command)
        return {"ok": 1}


class Collection:
    name = "complaints"


AT = datetime(2026, 12, 7, tzinfo=UTC)


def _version(outbox: Outbox, version: int, *event_ids: str) -> dict[str, Any]:
    return outbox.document(
        {"_id": "LPR-1", "version": version}, [Noted(event_id=e) for e in event_ids], AT
    )


async def _cleared_versions(db: Recorded, deferred: WriteBehind) -> list[Any]:
    await deferred.flush()
    return [s["q"]["version"] for c in db.commands for s in c["updates"]]


async def test_a_stale_copy_published_again_leaves_the_newer_clear_in_place() -> None:
    db, publisher = Recorded(), Publisher()
    deferred = WriteBehind(db)  # type: ignore[arg-type]
    outbox = Outbox([publisher], deferred)  # type: ignore[list-item]
    assert await outbox.flush(Collection(), _version(outbox, 3, "e-2", "e-3")) == 2  # type: ignore[arg-type]
    # A redelivery decided on the complaint as read before: version 2, with e-2 only.
    await outbox.flush(Collection(), _version(outbox, 2, "e-2"))  # type: ignore[arg-type]
    assert await _cleared_versions(db, deferred) == [3]


async def test_a_newer_version_that_announced_nothing_takes_the_clear_over() -> None:
    db, publisher = Recorded(), Publisher()
    deferred = WriteBehind(db)  # type: ignore[arg-type]
    outbox = Outbox([publisher], deferred)  # type: ignore[list-item]
    await outbox.flush(Collection(), _version(outbox, 1, "e-1"))  # type: ignore[arg-type]
    assert await outbox.flush(Collection(), _version(outbox, 2, "e-1")) == 0  # type: ignore[arg-type]
    # The same version again (a redelivery) changes nothing.
    assert await outbox.flush(Collection(), _version(outbox, 2, "e-1")) == 0  # type: ignore[arg-type]
    assert publisher.published == ["e-1"]
    assert await _cleared_versions(db, deferred) == [2]
    # Cleared: a later flush of a version still holding it publishes it again.
    assert await outbox.flush(Collection(), _version(outbox, 2, "e-1")) == 1  # type: ignore[arg-type]
