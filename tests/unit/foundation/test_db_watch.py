"""A stuck database client is given up; an outage of the database is waited out."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lapor.runtime.db_watch import RESTART_EXIT_CODE, ClientWatch
from tools.devstack.children import Child


def _probe(answers: Iterator[bool]) -> object:
    async def probe() -> bool:
        return next(answers)

    return probe


async def _rounds(watch: ClientWatch, n: int) -> list[bool]:
    return [await watch.stuck() for _ in range(n)]


async def test_three_rounds_in_a_row_of_a_stuck_client_give_it_up() -> None:
    watch = ClientWatch(own=_probe(iter([False] * 3)), fresh=_probe(iter([True] * 3)))  # type: ignore[arg-type]
    assert await _rounds(watch, 3) == [False, False, True]


async def test_a_database_outage_is_no_reason_to_give_up() -> None:
    # Every client fails: the database is away, and the service waits for it.
    watch = ClientWatch(own=_probe(iter([False] * 5)), fresh=_probe(iter([False] * 5)))  # type: ignore[arg-type]
    assert await _rounds(watch, 5) == [False] * 5


async def test_an_answer_in_between_starts_the_count_again() -> None:
    own = iter([False, False, True, False, False, False])
    watch = ClientWatch(own=_probe(own), fresh=_probe(iter([True] * 5)))  # type: ignore[arg-type]
    assert await _rounds(watch, 6) == [False, False, False, False, False, True]


def test_a_child_asking_to_be_started_again_is_started_again(tmp_path: Path) -> None:
    """The local stack honours the restart code, as compose's restart policy does;
    a child that exits otherwise, or is stopped, stays down."""
    marker = tmp_path / "first-run-done"
    script = (
        "import pathlib, sys, time\n"
        f"m = pathlib.Path({str(marker)!r})\n"
        "if not m.exists():\n"
        "    m.write_text('x'); sys.exit(%d)\n"
        # The second run only has to stay up until the test stops it.
        "print('second run', flush=True); time.sleep(60)\n" % RESTART_EXIT_CODE
    )
    second = threading.Event()
    child = Child("svc", [sys.executable, "-c", script], env={})

    def sink(_name: str, line: str) -> None:
        if line == "second run":
            second.set()

    child.start(sink)
    try:
        assert second.wait(30), "not started again"
        assert child.alive()
    finally:
        child.stop(timeout=5)
    assert not child.alive()


@pytest.mark.parametrize("code", [0, 1])
def test_a_child_exiting_otherwise_stays_down(code: int) -> None:
    child = Child("svc", [sys.executable, "-c", f"import sys; sys.exit({code})"], env={})
    lines: list[str] = []
    child.start(lambda _n, line: lines.append(line))
    assert child.process is not None
    assert child.process.wait(30) == code
    assert not any("started again" in line for line in lines)
