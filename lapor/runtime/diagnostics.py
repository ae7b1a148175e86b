"""A look inside a running service that seems stuck, without stopping it.

`kill -USR1 <pid>` prints every thread's Python stack (it works even while the
event loop is blocked); `kill -USR2 <pid>` prints every asyncio task's stack
(what each handler and background task is waiting for). Both go to stderr, the
service's log stream; neither changes anything in the process.
"""

import asyncio
import contextlib
import faulthandler
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO


def dump_threads_on_signal() -> None:
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def dump_tasks_on_signal(loop: asyncio.AbstractEventLoop) -> None:
    # Only a loop in the main thread can take signals (an app under a test client
    # runs in another): there is then nothing to install.
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks, loop)


def _dump_tasks(loop: asyncio.AbstractEventLoop) -> None:
    dump_tasks(asyncio.all_tasks(loop), sys.stderr)


def dump_tasks(tasks: set[asyncio.Task[Any]], out: TextIO) -> None:
    print(f"--- {len(tasks)} asyncio tasks ---", file=out)
    for task in sorted(tasks, key=lambda t: t.get_name()):
        state = "cancelling" if task.cancelling() else "done" if task.done() else "pending"
        print(f"--- {task.get_name()} ({state}):", file=out)
        # A suspended task's own stack shows only its outermost coroutine; what it
        # really waits for is at the end of its chain of awaits.
        for where in awaited_chain(task.get_coro()):
            print(f"    {where}", file=out)
    print("--- end of tasks ---", file=out, flush=True)


def awaited_chain(awaitable: object, depth: int = 40) -> Iterator[str]:
    """Each frame of a coroutine and of what it awaits, outermost first, then the
    object at the bottom (a future, a lock's waiter) that nothing runs."""
    for _ in range(depth):
        frame: FrameType | None = (
            getattr(awaitable, "cr_frame", None)
            or getattr(awaitable, "ag_frame", None)
            or getattr(awaitable, "gi_frame", None)
        )
        if frame is None:
            if awaitable is not None:
                yield f"awaits {awaitable!r:.200}"
            return
        code = frame.f_code
        yield f"{code.co_filename}:{frame.f_lineno} in {code.co_qualname}"
        awaitable = (
            getattr(awaitable, "cr_await", None)
            or getattr(awaitable, "ag_await", None)
            or getattr(awaitable, "gi_yieldfrom", None)
        )
