from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio

from lapor.devstack import SERVICES, Stack


@pytest.fixture(scope="session")
def stack(servers: Stack) -> Iterator[Stack]:
    """The four services as separate processes against the session's servers."""
    servers.mongo_db = "lapor_e2e"
    try:
        servers.start_services(SERVICES)
        yield servers
    finally:
        for service in SERVICES:
            if service in servers.children:
                servers.children[service].stop()


@pytest_asyncio.fixture(scope="session")
async def db(stack: Stack, mongo: Any) -> Any:
    return mongo[stack.mongo_db]
