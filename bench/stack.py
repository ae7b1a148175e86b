"""The stack under test: tools.devstack.Stack plus extra replicas and profiling."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psutil

from tools.devstack import ROOT, SERVICES, Stack, free_port, quiet_sink

BENCH_VAR = ROOT / "var" / "bench"
CENSUS_PATH = Path(__file__).resolve().parent / "census"


@dataclass
class BenchStack:
    """Servers and services of one benchmark run, each child watched by name."""

    stack: Stack
    cprofile: str | None = None
    census: bool = True
    replicas: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, mongo_db: str, cprofile: str | None = None, census: bool = True) -> BenchStack:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        stack = Stack(
            workdir=BENCH_VAR / stamp,
            nats_port=free_port(),
            mongo_port=free_port(),
            http_ports={name: free_port() for name in SERVICES},
            nats_url=os.environ.get("NATS_URL") or None,
            mongo_url=os.environ.get("MONGO_URL") or None,
            mongo_db=mongo_db,
            # Production defaults: JSON logs at INFO, SMS published on the bus. The
            # daily SMS budget (5,000 a region) would end a run's acknowledgements
            # once that many complaints went through: the bench sends more.
            extra_env={
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "INFO",
                "NOTIFY_CHANNEL": "bus",
                "NOTIFY_SMS_DAILY_BUDGET": "10000000",
            },
            sink=quiet_sink,
        )
        return cls(stack=stack, cprofile=cprofile, census=census)

    @property
    def workdir(self) -> Path:
        return self.stack.workdir

    def start(self) -> None:
        self.stack.start_servers()
        self.start_services()

    def start_services(self) -> None:
        for service in SERVICES:
            self._spawn_service(service, service, self.stack.http_ports[service])
        for service in SERVICES:
            self.stack.wait_ready(service)

    def stop_services(self) -> None:
        """Each service finishes and acks what it holds, then exits; the servers stay."""
        for service in SERVICES:
            self._stop(service)

    def add_replica(self, service: str) -> str:
        """Another process of `service` on the same durable consumers (a scale-out)."""
        name = f"{service}-{sum(r.startswith(service) for r in self.replicas) + 2}"
        port = free_port()
        self.stack.http_ports[name] = port
        self._spawn_service(name, service, port)
        self.stack.wait_ready(name)
        self.replicas.append(name)
        return name

    def stop_replicas(self) -> None:
        for name in self.replicas:
            self.stack.children[name].stop()
        self.replicas.clear()

    def stop(self) -> None:
        self.stop_replicas()
        if self.cprofile and self.cprofile in self.stack.children:
            self._stop(self.cprofile)
        self.stack.stop()

    def _stop(self, name: str) -> None:
        child = self.stack.children[name]
        if name != self.cprofile:
            child.stop()
            return
        # uvicorn re-raises the signal it stopped on; the default SIGTERM action
        # would end the process before cProfile writes, SIGINT unwinds instead.
        child.signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            if child.process is not None:
                child.process.wait(60)

    def pids(self) -> dict[str, int]:
        return {
            name: child.process.pid
            for name, child in self.stack.children.items()
            if child.process is not None and child.alive()
        }

    @property
    def census_dir(self) -> Path:
        return self.workdir / "census"

    def profile_path(self, service: str) -> Path:
        return self.workdir / f"cprofile-{service}.prof"

    def drop_data(self) -> None:
        """Free the disk after a run; the logs stay next to the results."""
        for part in ("ferretdb", "nats"):
            shutil.rmtree(self.workdir / part, ignore_errors=True)

    def _spawn_service(self, name: str, service: str, port: int) -> None:
        env = self.stack.service_env(service)
        env[f"{service.upper()}_HTTP_PORT"] = str(port)
        if self.census:
            # bench/census/sitecustomize.py counts the process's database commands.
            self.census_dir.mkdir(parents=True, exist_ok=True)
            paths = [str(CENSUS_PATH), *filter(None, [env.get("PYTHONPATH")])]
            env["PYTHONPATH"] = os.pathsep.join(paths)
            env["LAPOR_BENCH_CENSUS_DIR"] = str(self.census_dir)
            env["LAPOR_BENCH_CENSUS_NAME"] = service
        argv = [sys.executable, "-m", f"services.{service}"]
        if self.cprofile == name:
            # cProfile writes its file when the service exits cleanly on SIGTERM.
            argv = [sys.executable, "-m", "cProfile", "-o", str(self.profile_path(name))]
            argv += ["-m", f"services.{service}"]
        self.stack._spawn(name, argv, env)


def machine_info() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "packages": {
            name: _version(name) for name in ("nats-py", "pymongo", "faststream", "psutil")
        },
        "git_commit": _git("rev-parse", "HEAD"),
        # Others work in the same tree: what was measured may include their uncommitted edits.
        "git_uncommitted": sorted(
            line[3:]
            for line in (_git("status", "--porcelain", strip=False) or "").splitlines()
            if line[3:] and not line[3:].startswith(("bench/", "BENCHMARKS.md"))
        ),
    }


def ferretdb_module_version() -> str | None:
    """The FerretDB version our embedding program is built with (ferretdb/go.mod)."""
    go_mod = ROOT / "ferretdb" / "go.mod"
    if not go_mod.exists():
        return None
    found = re.search(r"github.com/FerretDB/FerretDB (v[0-9][^\s]*)", go_mod.read_text())
    return found.group(1) if found else None


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str, strip: bool = True) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run(  # noqa: S603 - fixed arguments, our own repository
        [git, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return (done.stdout.strip() if strip else done.stdout) or None
