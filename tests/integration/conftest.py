from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lapor.devstack import Stack


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
