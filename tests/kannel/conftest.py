"""The real Kannel (bearerbox, smsbox, fakesmsc as the SMSC) in front of the gateway
connector, next to the four services as processes.

Debian's `kannel` and `kannel-extras` must be installed. Without them the tests
are skipped locally; in CI (CI=true) they fail, so they are never skipped there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio

from tools.devstack import GATEWAY, KANNEL_CHILDREN, SERVICES, Stack, kannel_installed


def _require_kannel() -> None:
    if kannel_installed():
        return
    message = "Kannel is not installed: apt-get install kannel kannel-extras"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kannel(servers: Stack) -> Iterator[Stack]:
    """Kannel and the connector against the session's servers and services."""
    _require_kannel()
    started = [s for s in SERVICES if not (s in servers.children and servers.children[s].alive())]
    # smsbox calls a connector that did not answer again after 1 s, not 10 s.
    servers.kannel_retry_delay_s = 1
    before = dict(servers.extra_env)
    servers.extra_env["GATEWAY_STATUS_POLL_S"] = "0.5"
    # Kannel restarts within seconds here: its reports come well within this.
    servers.extra_env["GATEWAY_UNANSWERED_WAIT_S"] = "20"
    try:
        servers.start_services(started)
        servers.start_kannel()
        servers.start_gateway()
        yield servers
    finally:
        for name in (GATEWAY, *reversed(KANNEL_CHILDREN), *started):
            if name in servers.children:
                servers.children[name].stop()
        servers.extra_env.clear()
        servers.extra_env.update(before)


@pytest_asyncio.fixture(scope="session")
async def kannel_db(kannel: Stack, mongo: Any) -> Any:
    return mongo[kannel.mongo_db]
