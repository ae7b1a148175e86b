"""Background tasks: a failed round is logged and the next one runs; stop waits until
the task has ended."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lapor.runtime.periodic import every, start_task


async def test_a_failed_round_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 3:
            third.set()
        if len(rounds) == 1:
            raise ConnectionError("database away")

    with caplog.at_level(logging.WARNING):
        stop = start_task("test-every", every(0.001, step, "test step failed"))
        await asyncio.wait_for(third.wait(), 10)
        await stop()
    assert "test step failed: ConnectionError" in caplog.text


async def test_stop_waits_until_the_task_has_ended() -> None:
    ended = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    stop = start_task("test-task", work())
    await asyncio.sleep(0)
    await stop()
    assert ended.is_set()
