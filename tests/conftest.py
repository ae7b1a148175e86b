"""Shared fixtures. Real servers start lazily, once per session, only for tests that ask."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lapor.runtime.pii import new_key, public_key_of
from tools.devstack import Stack

# Settings built in the test process seal personal data with this session's key,
# as a deployment's services share one; a test Stack passes the private key to
# notify only and its public half to every process.
os.environ.setdefault("LAPOR_PII_KEY", new_key())
os.environ.setdefault("LAPOR_PII_PUBLIC_KEY", public_key_of(os.environ["LAPOR_PII_KEY"]))


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lapor-test-"))
    yield path
    if not os.environ.get("LAPOR_KEEP_TEST_DATA"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(workdir: Path) -> Iterator[Stack]:
    """Real nats-server and FerretDB on free ports with throwaway data folders."""
    stack = Stack.for_tests(
        workdir / "servers",
        nats_url=os.environ.get("LAPOR_TEST_NATS_URL"),
        mongo_url=os.environ.get("LAPOR_TEST_MONGO_URL"),
        extra_env={"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"},
    )
    try:
        stack.start_servers()
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture(scope="session")
async def nc(servers: Stack) -> AsyncIterator[Any]:
    import nats

    client = await nats.connect(servers.nats, name="lapor-tests")
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="session")
async def mongo(servers: Stack) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo, tz_aware=True)
    yield client
    await client.close()
