"""The local stack leaves no orphan process, however its supervisor ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

SUPERVISOR = """
import json, sys, time
from pathlib import Path
from tools.devstack import Stack
stack = Stack.for_tests(Path(sys.argv[1]), db_auth=True)  # as `make run`
stack.start_servers()
print(json.dumps([c.process.pid for c in stack.children.values()]), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is already dead; only its parent has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_servers_die_with_the_supervisor(tmp_path: Path, how: signal.Signals) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert supervisor.stdout is not None
    children = json.loads(supervisor.stdout.readline())
    assert len(children) == 2 and all(_alive(pid) for pid in children)

    supervisor.send_signal(how)
    supervisor.wait(10)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)
