"""`python -m tools.devstack`: `make run` in the foreground, or `auth-conf [--check]`."""

from __future__ import annotations

import os
import signal
import sys
import threading

from lapor.runtime.generated import write_or_check
from tools.devstack.kannel import DEV_KANNEL_ENV, FAKESMSC, KANNEL_DEFAULT_PORTS, kannel_installed
from tools.devstack.layout import (
    CONSOLE,
    CONSOLE_HTTP_PORT,
    DEFAULT_PORTS,
    DEV_DIR,
    DLQ,
    DLQ_HTTP_PORT,
    GATEWAY,
    GATEWAY_HTTP_PORT,
    SERVICES,
)
from tools.devstack.nats_auth import AUTH_CONF, nats_users, render_auth_conf
from tools.devstack.stack import Stack


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
    return write_or_check(
        {AUTH_CONF: render_auth_conf(nats_users())},
        check,
        stale_message=lambda _: f"{AUTH_CONF} is stale: run python -m tools.devstack auth-conf",
        announce=True,
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["auth-conf"]:
        return write_auth_conf(check="--check" in argv)
    return run_foreground()
