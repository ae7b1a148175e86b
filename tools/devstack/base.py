"""What every part of a stack shares: its settings, logins, URLs and ports, the
environment of a child, spawning one and waiting until it is ready."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lapor.contracts import subjects
from lapor.contracts.partners import PARTNERS, partner_login
from lapor.runtime import db_access
from lapor.runtime.broker import inbox_prefix
from lapor.runtime.pii import new_key as new_pii_key
from lapor.runtime.pii import public_key_of
from tools.devstack.children import Child, free_port, print_sink
from tools.devstack.layout import (
    CONSOLE,
    DEFAULT_PORTS,
    DLQ,
    GATEWAY,
    OPERATOR_FILE,
    PII_KEY_FILE,
    PII_KEY_HOLDERS,
    ROOT,
    SERVICES,
    replica_of,
)
from tools.devstack.nats_auth import NatsUser, new_password


@dataclass
class StackBase:
    """The settings of a stack and what its parts share; `Stack` adds the parts."""

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
    # Run the dead-letter service (services.deadletters) with the services.
    with_dlq: bool = True
    # Replicas of every service and of the watcher: children `intake`, `intake-2`, …;
    # each service replica has an HTTP port of its own, picked once per Stack.
    replicas: int = 1
    # fsync every JetStream write before the ack (production compose does).
    nats_sync_always: bool = False
    # A JetStream cluster of this many nats-servers (children nats-1 … nats-N, each
    # with its own store) instead of the single `nats`; node 1 listens on nats_port,
    # the other ports are picked once per Stack and kept for restarts.
    nats_nodes: int = 1
    nats_node_ports: dict[str, dict[str, int]] = field(default_factory=dict)
    # One random password per user and per Stack: restarts of a child reuse them.
    nats_passwords: dict[str, str] = field(default_factory=dict, repr=False)
    _nats_users: list[NatsUser] = field(default_factory=list, repr=False)
    # Our FerretDB with authentication: every child logs in as its own database
    # user, allowed only its collections (lapor.runtime.db_access), and `mongo`
    # is the operator's login. `make run` turns it on; tests opt in.
    db_auth: bool = False
    # Who gets the private personal-data key besides notify: the dead-letter watcher
    # only where an operator chooses console replays over its isolation.
    pii_key_holders: frozenset[str] = PII_KEY_HOLDERS
    # Kannel's ports (admin, smsbox, sendsms, fake_smsc, inject_smsc): picked once
    # per Stack unless given, kept for restarts.
    kannel_ports: dict[str, int] = field(default_factory=dict)
    # smsbox's wait before it calls the connector again after a failed callback.
    kannel_retry_delay_s: int = 10
    # The console's first admin login, once made (`ensure_console_admin`).
    console_login: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def nats_auth(self) -> bool:
        """True when this stack runs its own nats-server, which then requires logins."""
        return self.nats_url is None

    @property
    def nats(self) -> str:
        """URL for operators and tests: the admin user's credentials are in it."""
        return self.nats_url or self.nats_url_for("admin")

    def nats_url_for(self, user: str) -> str:
        """`user`'s login; on a cluster, one URL per node, comma-separated."""
        if not self.nats_auth:
            return self.nats
        login = f"{user}:{self.nats_password(user)}@"
        return ",".join(f"nats://{login}127.0.0.1:{port}" for port in self._nats_client_ports())

    def _nats_client_ports(self) -> list[int]:
        if self.nats_nodes == 1:
            return [self.nats_port]
        return [self.nats_node(node)["client"] for node in self.nats_node_names()]

    def nats_node_names(self) -> list[str]:
        """The children (and server names) of the cluster nodes: nats-1 … nats-N."""
        return [f"nats-{i}" for i in range(1, self.nats_nodes + 1)] if self.nats_nodes > 1 else []

    def nats_node(self, node: str) -> dict[str, int]:
        """A cluster node's ports: client, cluster route and HTTP monitoring."""
        if not self.nats_node_ports:
            for i, name in enumerate(self.nats_node_names()):
                client = self.nats_port if i == 0 else free_port()
                self.nats_node_ports[name] = {
                    "client": client,
                    "route": free_port(),
                    "monitor": free_port(),
                }
        return self.nats_node_ports[node]

    def nats_password(self, user: str) -> str:
        if user not in self.nats_passwords:
            self.nats_passwords[user] = new_password()
        return self.nats_passwords[user]

    @property
    def mongo(self) -> str:
        """URL for operators and tests: with db_auth, the operator's login is in it."""
        if self.db_auth and self.mongo_url is None:
            return self.mongo_url_for(db_access.OPERATOR)
        return self.mongo_url or f"mongodb://127.0.0.1:{self.mongo_port}"

    def mongo_url_for(self, process: str) -> str:
        """The database login of a process (a service, `dlq`, the operator)."""
        if not self.db_auth or self.mongo_url is not None:
            return self.mongo
        # FerretDB creates the operator in `admin` (its first user); the processes'
        # users live in the application database, as on MongoDB.
        source = "admin" if process == db_access.OPERATOR else self.mongo_db
        login = f"{db_access.db_user(process)}:{self.db_password(process)}"
        return f"mongodb://{login}@127.0.0.1:{self.mongo_port}/?authSource={source}"

    def db_password(self, process: str) -> str:
        """Kept in the data folder: the users live as long as the database does."""
        return self._dev_key(f"db_{process}_password", new_password())

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.http_port(service)}"

    def replica_names(self, service: str) -> list[str]:
        """The children that run `service` (or the watcher): `intake`, `intake-2`, …"""
        return [service, *(f"{service}-{i}" for i in range(2, self.replicas + 1))]

    def http_port(self, name: str) -> int:
        """A service replica's HTTP port; the first replica has the service's port, the
        others get a free one once, kept for their restarts."""
        if name not in self.http_ports and (
            replica_of(name) in SERVICES or name in (GATEWAY, CONSOLE, DLQ)
        ):
            self.http_ports[name] = free_port()
        return self.http_ports[name]

    @property
    def operator_file(self) -> Path:
        return self.workdir / OPERATOR_FILE

    def write_operator_file(self) -> None:
        """The run's admin login for the CLI; only the owner may read it."""
        found: dict[str, object] = {
            "nats_url": self.nats,
            # What `lapor sms` publishes with: only the gateway may name a sender.
            "gateway_nats_url": self.nats_url_for("gateway"),
            "api_url": self.url("intake"),
            "mongo_url": self.mongo,
            "mongo_db": self.mongo_db,
            # What each partner system needs to submit: its login and its subject.
            "partners": {
                partner: {
                    "nats_url": self.nats_url_for(partner_login(partner)),
                    "inbox_prefix": inbox_prefix(partner_login(partner)),
                    "subject": subjects.inbound_partner(partner),
                }
                for partner in PARTNERS
            },
        }
        if self.console_login:
            found["console_url"] = self.url(CONSOLE) + "/"
            found["console_admin"] = dict(self.console_login)
        if not os.environ.get("LAPOR_PII_KEY"):
            # The key the services get (`_child_env`); from the environment it is
            # the operator's to pass on.
            found["pii_key_file"] = str(self.workdir / PII_KEY_FILE)
        text = json.dumps(found, indent=2)
        tmp = self.operator_file.with_name(OPERATOR_FILE + ".tmp")
        tmp.unlink(missing_ok=True)
        # Created 0600, never readable by others even for a moment; renamed into place.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        tmp.replace(self.operator_file)

    def _child_env(self, user: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "NATS_URL": self.nats_url
                or ",".join(f"nats://127.0.0.1:{port}" for port in self._nats_client_ports()),
                "MONGO_URL": self.mongo_url_for(user),
                "MONGO_DB": self.mongo_db,
                "LAPOR_DATA_DIR": str(ROOT / "data"),
                "PYTHONUNBUFFERED": "1",
                "LAPOR_PII_PUBLIC_KEY": public_key_of(self.pii_key()),
                # A development stack: values from the caller's environment need
                # not be production-strong (its generated ones are anyway).
                "LAPOR_ENV": os.environ.get("LAPOR_ENV") or "development",
            }
        )
        # Inherited or not, the private key reaches only the children that open.
        for name in ("LAPOR_PII_KEY", "LAPOR_PII_OLD_KEYS"):
            env.pop(name, None)
        if user in self.pii_key_holders:
            env["LAPOR_PII_KEY"] = self.pii_key()
            if old := os.environ.get("LAPOR_PII_OLD_KEYS"):
                env["LAPOR_PII_OLD_KEYS"] = old
        if self.nats_auth:
            env.update({"NATS_USER": user, "NATS_PASSWORD": self.nats_password(user)})
        return env

    def pii_key(self) -> str:
        """The private personal-data key: the caller's, or one made for this data folder."""
        return os.environ.get("LAPOR_PII_KEY") or self._dev_key(PII_KEY_FILE, new_pii_key())

    def _wait_log(self, name: str, marker: str, offset: int, timeout: float = 60.0) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.exists():
                with log.open("rb") as fh:
                    fh.seek(offset)
                    if marker.encode() in fh.read():
                        return
            if not self.children[name].alive():
                raise RuntimeError(f"{name} exited before it was ready")
            time.sleep(0.05)
        raise TimeoutError(f"{name} not ready after {timeout:.0f}s")

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

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], logs: Path | None = None
    ) -> None:
        logs = logs or self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = Child(name, argv, env, log_path=logs / f"{name}.log")
        child.start(self.sink)
        self.children[name] = child

    def _dev_key(self, name: str, fresh: str) -> str:
        """A key of this stack's data folder: made once, kept for restarts."""
        key_file = self.workdir / name
        if not key_file.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            key_file.write_text(fresh)
            key_file.chmod(0o600)
        return key_file.read_text().strip()
