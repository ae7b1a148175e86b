from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tools.devstack import ROOT, SERVICES, Stack

# A responded complaint closes itself this soon in the end-to-end runs, so that
# "answer, then silence, then auto-close" can be watched through the real chain.
AUTO_CLOSE_MINUTES = 1
# After a reopening the agency must answer again this soon, so that the second
# round's warning and breach can be watched too.
REOPEN_ANSWER_MINUTES = 1


def quick_auto_close_data(workdir: Path) -> Path:
    """The region data with Banjar's auto-close window and the answer owed after a
    reopening shortened to minutes."""
    data = workdir / "e2e-data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(ROOT / "data", data)
    policy_file = data / "regions" / "banjar" / "sla.yaml"
    policy = yaml.safe_load(policy_file.read_text(encoding="utf-8"))
    policy["auto_close"] = {
        "no_reply_after": {"unit": "clock_minutes", "amount": AUTO_CLOSE_MINUTES}
    }
    quick = {"unit": "clock_minutes", "amount": REOPEN_ANSWER_MINUTES}
    policy["reopen"]["answer"] = {priority: quick for priority in ("normal", "high", "urgent")}
    policy_file.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return data


@pytest.fixture(scope="session")
def stack(servers: Stack, workdir: Path) -> Iterator[Stack]:
    """The four services as separate processes against the session's servers."""
    servers.mongo_db = "lapor_e2e"
    before = dict(servers.extra_env)
    servers.extra_env["LAPOR_DATA_DIR"] = str(quick_auto_close_data(workdir))
    try:
        servers.start_services(SERVICES)
        yield servers
    finally:
        for service in SERVICES:
            if service in servers.children:
                servers.children[service].stop()
        servers.extra_env.clear()
        servers.extra_env.update(before)


@pytest_asyncio.fixture(scope="session")
async def db(stack: Stack, mongo: Any) -> Any:
    return mongo[stack.mongo_db]
