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

The package, a module a job: `layout` (names, ports, files), `children` (child
processes), `nats_auth` (logins and allow-lists), `nats`, `ferretdb`, `kannel`
and `console` (the parts of a stack), `stack` (`Stack`, which puts them
together) and `cli` (`python -m tools.devstack`).
"""

from tools.devstack.children import Child, free_port, print_sink, quiet_sink, wait_for_port
from tools.devstack.cli import run_foreground, write_auth_conf
from tools.devstack.ferretdb import FERRETDB_BIN, ensure_ferretdb
from tools.devstack.kannel import (
    DEV_KANNEL_ENV,
    FAKESMSC,
    KANNEL_CHILDREN,
    KANNEL_DEFAULT_PORTS,
    KANNEL_DIR,
    kannel_bin,
    kannel_installed,
    render_kannel,
)
from tools.devstack.layout import (
    CONSOLE,
    CONSOLE_ADMIN,
    CONSOLE_HTTP_PORT,
    DEFAULT_PORTS,
    DEV_DIR,
    DEV_DIR_ENV,
    DLQ,
    DLQ_HTTP_PORT,
    GATEWAY,
    GATEWAY_HTTP_PORT,
    OPERATOR_FILE,
    PII_KEY_FILE,
    PII_KEY_HOLDERS,
    ROOT,
    SERVICES,
    replica_of,
)
from tools.devstack.nats import NATS_STORE_KEY_ENV, nats_cluster_block, nats_server_bin
from tools.devstack.nats_auth import (
    AUTH_CONF,
    GATEWAY_CONSUMER,
    JS_API,
    OUTBOUND_STREAM,
    NatsUser,
    nats_users,
    new_password,
    partner_user,
    render_auth_conf,
    service_user,
)
from tools.devstack.stack import Stack

__all__ = [
    "AUTH_CONF",
    "CONSOLE",
    "CONSOLE_ADMIN",
    "CONSOLE_HTTP_PORT",
    "DEFAULT_PORTS",
    "DEV_DIR",
    "DEV_DIR_ENV",
    "DEV_KANNEL_ENV",
    "DLQ",
    "DLQ_HTTP_PORT",
    "FAKESMSC",
    "FERRETDB_BIN",
    "GATEWAY",
    "GATEWAY_CONSUMER",
    "GATEWAY_HTTP_PORT",
    "JS_API",
    "KANNEL_CHILDREN",
    "KANNEL_DEFAULT_PORTS",
    "KANNEL_DIR",
    "NATS_STORE_KEY_ENV",
    "OPERATOR_FILE",
    "OUTBOUND_STREAM",
    "PII_KEY_FILE",
    "PII_KEY_HOLDERS",
    "ROOT",
    "SERVICES",
    "Child",
    "NatsUser",
    "Stack",
    "ensure_ferretdb",
    "free_port",
    "kannel_bin",
    "kannel_installed",
    "nats_cluster_block",
    "nats_server_bin",
    "nats_users",
    "new_password",
    "partner_user",
    "print_sink",
    "quiet_sink",
    "render_auth_conf",
    "render_kannel",
    "replica_of",
    "run_foreground",
    "service_user",
    "wait_for_port",
    "write_auth_conf",
]
