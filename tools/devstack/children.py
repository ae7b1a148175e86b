"""Child processes of the devstack: each in its own process group, dying with the
supervisor, its output pumped to a log file and a sink."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lapor.runtime.db_watch import RESTART_EXIT_CODE
from tools.devstack.layout import ROOT

_COLORS = {
    "nats": 90, "ferretdb": 90, "dlq": 31, "intake": 36, "router": 35, "sla": 33, "notify": 32,
    "gateway": 34, "bearerbox": 90, "smsbox": 90, "smsc": 90, "hotspots": 94, "console": 96,
}  # fmt: skip


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process was given before: the kernel may
    hand out a just-released port again, and a three-node stack asks for fifteen."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def _die_with_parent() -> None:
    # Linux: deliver SIGTERM to the child when the supervisor dies, however it dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # Set by `stop`: an exit asking to be started again is then not honoured.
    stopping: bool = False

    def start(self, sink: Callable[[str, str], None]) -> None:
        self.stopping = False
        self.process = self._spawn()
        threading.Thread(target=self._run, args=(sink,), daemon=True).start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _run(self, sink: Callable[[str, str], None]) -> None:
        """Pump the child's output; a service that gave up a stuck database client
        asks to be started again (lapor/runtime/db_watch.py), as compose's restart
        policy would, and is, from this thread: its death signal is tied to the
        thread that started it, which must live as long as it does."""
        while True:
            assert self.process is not None
            self._pump(self.process, sink)
            if self.process.wait() != RESTART_EXIT_CODE or self.stopping:
                return
            sink(self.name, "exited asking to be started again: starting it")
            self.process = self._spawn()

    def _pump(self, process: subprocess.Popen[bytes], sink: Callable[[str, str], None]) -> None:
        assert process.stdout is not None
        log_file = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        try:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                if log_file:
                    log_file.write(line + "\n")
                    log_file.flush()
                sink(self.name, line)
        finally:
            if log_file:
                log_file.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping = True
        if not self.alive():
            return
        assert self.process is not None
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(5)


def print_sink(name: str, line: str) -> None:
    color = _COLORS.get(name, 0)
    sys.stdout.write(f"\x1b[{color}m{name:>8} |\x1b[0m {line}\n")
    sys.stdout.flush()


def quiet_sink(_name: str, _line: str) -> None:
    pass
