from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tools.devstack import Stack


@pytest.fixture(scope="module")
def own_servers(workdir: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Servers of this module alone: in-process consumers must not compete with the
    service processes of the end-to-end tests for the same durable consumers."""
    stack = Stack.for_tests(workdir / request.module.__name__.rsplit(".", 1)[-1])
    try:
        stack.start_servers()
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_nc(own_servers: Stack) -> AsyncIterator[Any]:
    import nats

    client = await nats.connect(own_servers.nats, name="lapor-tests")
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_mongo(own_servers: Stack) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_servers.mongo, tz_aware=True)
    yield client
    await client.close()


FUZZ_CASES = pytest.StashKey[Counter[str]]()


@pytest.fixture(scope="session")
def fuzz_tally(pytestconfig: pytest.Config) -> Counter[str]:
    """Cases the API fuzzer sent, per run, for the session summary."""
    return pytestconfig.stash.setdefault(FUZZ_CASES, Counter())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    tally = config.stash.get(FUZZ_CASES, None)
    if not tally:
        return
    runs = {k: n for k, n in tally.items() if not k.startswith("answer")}
    answers = {k.split()[1]: n for k, n in tally.items() if k.startswith("answer")}
    total = sum(runs.values())
    terminalreporter.write_line(
        f"API fuzzing: {total} cases sent "
        f"({', '.join(f'{k} {n}' for k, n in sorted(runs.items()))}); answers "
        f"{', '.join(f'{k} {n}' for k, n in sorted(answers.items()))}"
    )
    if report := os.environ.get("LAPOR_FUZZ_REPORT"):
        summary = {"total": total, "runs": runs, "answers": answers}
        Path(report).write_text(json.dumps(summary, indent=2) + "\n")
