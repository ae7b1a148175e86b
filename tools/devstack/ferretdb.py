"""FerretDB: the embedded build of ferretdb/, and running it with one database
user per process (lapor.runtime.db_access)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from pathlib import Path

from lapor.runtime import db_access
from tools.devstack.base import StackBase
from tools.devstack.children import wait_for_port
from tools.devstack.layout import ROOT

FERRETDB_BIN = ROOT / ".cache" / "bin" / "lapor-ferretdb"


def ensure_ferretdb() -> Path:
    """Build the embedded FerretDB (Go module proxy) once per version of its sources
    in ferretdb/ (a new patch, a new flag); later calls reuse the binary."""
    stamp = FERRETDB_BIN.with_name(FERRETDB_BIN.name + ".sources")
    FERRETDB_BIN.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time: build.sh rebuilds its work folder from scratch.
    with open(FERRETDB_BIN.with_name(".ferretdb-build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sources = _ferretdb_sources()
        if FERRETDB_BIN.exists() and stamp.exists() and stamp.read_text() == sources:
            return FERRETDB_BIN
        fresh = FERRETDB_BIN.with_name(FERRETDB_BIN.name + ".new")
        subprocess.run(["bash", "ferretdb/build.sh", str(fresh)], cwd=ROOT, check=True)
        # Renamed into place: a FerretDB running from the old binary keeps it.
        fresh.replace(FERRETDB_BIN)
        stamp.write_text(sources)
    return FERRETDB_BIN


def _ferretdb_sources() -> str:
    """A digest of what ferretdb/build.sh reads from the repository."""
    here = ROOT / "ferretdb"
    digest = hashlib.sha256()
    for path in sorted(
        [*here.glob("*.go"), *here.glob("go.*"), here / "build.sh", *here.glob("patches/*")]
    ):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class FerretDBServer(StackBase):
    """Starting (or restarting) this stack's FerretDB and its users."""

    def start_ferretdb(self) -> None:
        """Start (or restart) FerretDB on the same port and data directory."""
        data = self.workdir / "ferretdb"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(ensure_ferretdb()),
            "-listen",
            f"127.0.0.1:{self.mongo_port}",
            "-data",
            str(data),
        ]
        env = dict(os.environ)
        if self.db_auth:
            access = self.workdir / "db_access.json"
            access.write_text(db_access.render_access(self.mongo_db))
            argv += ["-access", str(access)]
            env["LAPOR_FERRETDB_OPERATOR_PASSWORD"] = self.db_password(db_access.OPERATOR)
        self._spawn("ferretdb", argv, env)
        wait_for_port(self.mongo_port)
        if self.db_auth:
            self.ensure_db_users()

    def ensure_db_users(self) -> None:
        """Every process's user, with this data folder's password (created once,
        updated if it exists). FerretDB v1 stores no roles: what each user may
        touch is the -access file written above."""
        from pymongo import MongoClient
        from pymongo.errors import OperationFailure

        client: MongoClient[dict[str, object]] = MongoClient(
            self.mongo, serverSelectionTimeoutMS=10_000
        )
        try:
            db = client[self.mongo_db]
            for process in db_access.GRANTS:
                name, password = db_access.db_user(process), self.db_password(process)
                try:
                    db.command("createUser", name, pwd=password, roles=[])
                except OperationFailure as exc:
                    if exc.code != 51003:  # UserAlreadyExists
                        raise
                    db.command("updateUser", name, pwd=password)
        finally:
            client.close()
