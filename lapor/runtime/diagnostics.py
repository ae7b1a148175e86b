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


def dump_threads_on_signal() -> None:
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def dump_tasks_on_signal(loop: asyncio.AbstractEventLoop) -> None:
    # Only a loop in the main thread can take signals (an app under a test client
    # runs in another): there is then nothing to install.
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks, loop)


def _dump_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    print(f"--- {len(tasks)} asyncio tasks ---", file=sys.stderr)
    for task in sorted(tasks, key=lambda t: t.get_name()):
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    print("--- end of tasks ---", file=sys.stderr, flush=True)
