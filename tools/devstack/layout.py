"""The stack's children, ports and files: the names every part of the devstack shares."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "router", "sla", "notify", "hotspots")
DEFAULT_PORTS = {"intake": 8080, "router": 8081, "sla": 8082, "notify": 8083, "hotspots": 8086}
DLQ = "dlq"  # the dead-letter service's child (services.deadletters)
# Its HTTP API for admins; only the first watcher serves it.
DLQ_HTTP_PORT = 8087
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


def replica_of(name: str) -> str:
    """The service (or the watcher) a child runs: `intake-2` runs `intake`."""
    base, _, index = name.rpartition("-")
    return base if base in (*SERVICES, DLQ) and index.isdigit() else name
