"""Background tasks of a running service: one shape for starting and stopping them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Stop = Callable[[], Awaitable[None]]


def start_task(name: str, work: Coroutine[Any, Any, None]) -> Stop:
    """Run `work` as a named task; returns the coroutine function that cancels it and
    waits until it has ended."""
    task = asyncio.create_task(work, name=name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop


async def every(interval_s: float, step: Callable[[], Awaitable[Any]], failure: str) -> None:
    """Wait `interval_s`, run `step`, for ever; a failed round (the database or NATS
    away) is logged as `failure: <error type>` and the next round tries again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await step()
        except Exception as exc:
            log.warning("%s: %s", failure, type(exc).__name__)


def start_flushing(
    name: str, every_s: float, flush: Callable[[], Awaitable[Any]], failure: str
) -> Stop:
    """Flush a buffer every `every_s` in one task; the returned stop coroutine ends the
    task, then flushes once more (what that last flush cannot write is lost with the
    process, which the buffer's own recovery covers)."""
    stop_flushing = start_task(name, every(every_s, flush, failure))

    async def stop() -> None:
        await stop_flushing()
        with contextlib.suppress(Exception):
            await flush()

    return stop
