"""A task dump names what a stuck task really waits for, not only where it began."""

import asyncio
import io

from lapor.runtime.diagnostics import dump_tasks


async def wait_for_the_pool(event: asyncio.Event, arrived: asyncio.Event) -> None:
    arrived.set()
    await event.wait()


async def find_one(event: asyncio.Event, arrived: asyncio.Event) -> None:
    await wait_for_the_pool(event, arrived)


async def handler(event: asyncio.Event, arrived: asyncio.Event) -> None:
    await find_one(event, arrived)


async def test_the_dump_follows_the_awaits_down_to_the_waiting_future() -> None:
    event, arrived = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(handler(event, arrived), name="stuck-handler")
    await asyncio.wait_for(arrived.wait(), timeout=5)
    out = io.StringIO()
    dump_tasks({task}, out)
    event.set()
    await task

    lines = out.getvalue().splitlines()
    named = [line for line in lines if " in " in line]
    assert [line.rsplit(" in ", 1)[1] for line in named][:3] == [
        "handler",
        "find_one",
        "wait_for_the_pool",
    ]
    assert "Event.wait" in out.getvalue()
    assert lines[-1] == "--- end of tasks ---"
