"""The embedded database's settings, measured against each other in one run.

Each variant is a fresh lapor-ferretdb on its own data: SQLite with
`synchronous` FULL (FerretDB's default) or NORMAL, and FerretDB's PostgreSQL
backend on a local PostgreSQL when its programs are installed. Variants are
measured in turns (A B C A B C ...) so a busy machine weighs on each alike, and
each run ends with the durability check the choice depends on: acknowledged
writes, then SIGKILL of the server, then a restart on the same data counting
what survived.

    python -m bench.ferretdb_tuning [--rounds 3] [--seconds 5] [--size 10000]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pymongo import AsyncMongoClient

from bench.raw import complaint_like, db_limits
from tools.devstack import ROOT, ensure_ferretdb, free_port

RESULTS = ROOT / "bench" / "results" / "ferretdb_tuning.json"
OPERATIONS = ("insert", "update", "findAndModify", "find")
CRASH_WRITES = 2000


@dataclass(frozen=True)
class Variant:
    name: str
    synchronous: str | None = None  # SQLite only
    postgresql: bool = False

    def arguments(self, postgresql_url: str | None) -> list[str]:
        if self.postgresql:
            assert postgresql_url is not None
            return ["-postgresql", postgresql_url]
        return ["-sqlite-synchronous", self.synchronous or "FULL"]


VARIANTS = (
    Variant("sqlite-synchronous-full", synchronous="FULL"),
    Variant("sqlite-synchronous-normal", synchronous="NORMAL"),
    Variant("postgresql", postgresql=True),
)
ALL_VARIANTS = ",".join(variant.name for variant in VARIANTS)


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class LocalPostgres:
    """A throwaway PostgreSQL cluster on loopback, for FerretDB's PostgreSQL backend."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return all(shutil.which(program) for program in ("initdb", "postgres", "createdb"))

    @staticmethod
    def _run(program: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        path = shutil.which(program) or program
        # Fixed programs, our own arguments.
        return subprocess.run([path, *args], capture_output=True, **_as_owner(), **kw)  # noqa: S603

    def start(self) -> str:
        data = str(self.root / "pgdata")
        self._run("initdb", "-D", data, "-U", "ferretdb", "--auth=trust", "-E", "UTF8", check=True)
        address = ["-p", str(self.port), "-k", str(self.root), "-h", "127.0.0.1"]
        self.process = subprocess.Popen(  # noqa: S603 - fixed program, our own arguments
            [shutil.which("postgres") or "postgres", "-D", data, *address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **_as_owner(),
        )
        _wait_port(self.port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server accepts connections before it is ready
            made = self._run(
                "createdb", *address[:2], "-h", "127.0.0.1", "-U", "ferretdb", "ferretdb"
            )
            if made.returncode == 0 or b"already exists" in made.stderr:
                break
            time.sleep(0.2)
        return f"postgres://ferretdb@127.0.0.1:{self.port}/ferretdb"

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)


def _as_owner() -> dict[str, Any]:
    """PostgreSQL refuses to run as root; run it as `nobody` then (the folder is theirs)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid}


class Server:
    def __init__(self, binary: Path, data: Path, variant: Variant, pg_url: str | None) -> None:
        self.binary, self.data, self.variant, self.pg_url = binary, data, variant, pg_url
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.data.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - our own build, our own arguments
            [
                str(self.binary),
                "-listen",
                f"127.0.0.1:{self.port}",
                "-data",
                str(self.data),
                *self.variant.arguments(self.pg_url),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)
        return f"mongodb://127.0.0.1:{self.port}/"

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


async def _crash_check(server: Server, db_name: str) -> dict[str, int]:
    """Acknowledged inserts, SIGKILL, restart: how many of them the data still holds."""
    url = server.start()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    coll = client[db_name]["crash"]
    now = datetime.now(UTC)
    for i in range(CRASH_WRITES):
        await coll.insert_one(complaint_like(i, now))
    await client.close()
    server.kill()
    url = server.start()
    client = AsyncMongoClient(url)
    survived = await client[db_name]["crash"].count_documents({})
    await client.close()
    server.stop()
    return {"acknowledged": CRASH_WRITES, "after_sigkill": survived}


async def _measure(
    binary: Path, root: Path, variant: Variant, pg: LocalPostgres | None, **kw: Any
) -> dict[str, Any]:
    pg_url = pg.start() if pg is not None else None
    server = Server(binary, root / "ferretdb", variant, pg_url)
    url = server.start()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        limits = await db_limits(
            client, "tuning", kw["seconds"], size=kw["size"], ferretdb_dir=None
        )
    finally:
        await client.close()
        server.stop()
    limits["durability"] = await _crash_check(server, "tuning_crash")
    return limits


def main(
    rounds: Annotated[int, typer.Option(help="turns per variant")] = 3,
    seconds: Annotated[float, typer.Option(help="seconds per operation and mode")] = 5.0,
    size: Annotated[int, typer.Option(help="documents in the read/update collection")] = 10_000,
    variants: Annotated[str, typer.Option(help="comma-separated variant names")] = ALL_VARIANTS,
    binary: Annotated[Path | None, typer.Option(help="a lapor-ferretdb build to use")] = None,
) -> None:
    chosen = [v for v in VARIANTS if v.name in variants.split(",")]
    if not LocalPostgres.available():
        chosen = [v for v in chosen if not v.postgresql]
    binary = binary or ensure_ferretdb()
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in chosen}
    for turn in range(rounds):
        for variant in chosen:
            with tempfile.TemporaryDirectory(prefix="lapor-tuning-") as tmp:
                root = Path(tmp)
                # The PostgreSQL cluster may run as another user (see _as_owner).
                os.chmod(root, 0o777)  # noqa: S103 - a throwaway folder of this run
                pg = LocalPostgres(root) if variant.postgresql else None
                try:
                    result = asyncio.run(
                        _measure(binary, root, variant, pg, seconds=seconds, size=size)
                    )
                finally:
                    if pg is not None:
                        pg.stop()
            runs[variant.name].append(result)
            rates = ", ".join(f"{op} {result[op]['per_s']:.0f}/s" for op in OPERATIONS)
            typer.echo(
                f"turn {turn + 1} {variant.name}: {rates}; durability {result['durability']}"
            )
    summary = {
        name: {
            **{op: statistics.median(r[op]["per_s"] for r in results) for op in OPERATIONS},
            "durability": [r["durability"] for r in results],
        }
        for name, results in runs.items()
    }
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": rounds,
        "seconds": seconds,
        "size": size,
        "load_average": os.getloadavg(),
        "median_per_s": summary,
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(json.dumps({"median_per_s": summary}, indent=2))


if __name__ == "__main__":
    typer.run(main)
