"""Giving up a database client that stopped answering while the database answers.

pymongo's async client (4.20 on Python 3.11) can wedge after an outage: the chaos
test caught a replica whose every database call waited for ever in the connection
pool (tasks whose timeouts had cancelled them, waiting to take the pool's lock
again) while the database served every other process. Nothing inside the process
recovers from that. So each service checks its own client now and then; when it
fails while a new client reaches the database, several times in a row, the
process exits with `RESTART_EXIT_CODE` and its supervisor starts it again
(compose's restart policy; the local stack does the same for this code). Nothing
is lost: a message is acked only after its change is stored, so what the process
held is delivered again, and deferred writes are covered by the sweeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

from lapor.runtime.db import database_ready
from lapor.runtime.periodic import Stop, every, start_task

log = logging.getLogger(__name__)

# EX_TEMPFAIL: "try again later", which is what the supervisor should do.
RESTART_EXIT_CODE = 75

Probe = Callable[[], Awaitable[bool]]


@dataclass
class ClientWatch:
    """`own`: a ping through the service's client; `fresh`: one through a new client."""

    own: Probe
    fresh: Probe
    strikes_to_give_up: int = 3
    strikes: int = 0

    async def stuck(self) -> bool:
        """One round: True once the service's client failed `strikes_to_give_up`
        rounds in a row in which a new client reached the database."""
        if await self.own():
            self.strikes = 0
            return False
        if not await self.fresh():
            self.strikes = 0  # the database itself is away: an outage, waited out
            return False
        self.strikes += 1
        log.warning(
            "the database answers a new client but not this service's (%d of %d)",
            self.strikes,
            self.strikes_to_give_up,
        )
        return self.strikes >= self.strikes_to_give_up


def fresh_ping(url: str, database: str, timeout_s: float = 5.0) -> Probe:
    """A ping of the service's own database (the one its login may use) through a
    new client, closed again."""

    async def ping() -> bool:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=int(timeout_s * 1000), appname="lapor-client-watch"
        )
        try:
            return await database_ready(client[database], timeout_s + 1)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    return ping


def _restart() -> None:
    log.critical("this service's database client is stuck: exiting to be started again")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(RESTART_EXIT_CODE)


def start_client_watch(
    watch: ClientWatch, every_s: float = 15.0, give_up: Callable[[], None] = _restart
) -> Stop:
    """Check every `every_s`; returns the stop coroutine."""

    async def check() -> None:
        if await watch.stuck():
            give_up()

    return start_task("lapor-db-client-watch", every(every_s, check, "database client not checked"))
