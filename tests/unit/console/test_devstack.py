"""`make run` starts the console on 8084 and hands its first admin login to the operator."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tools.devstack import CONSOLE, CONSOLE_HTTP_PORT, GATEWAY_HTTP_PORT, Stack


def test_the_operator_file_names_the_console_and_its_first_admin(tmp_path: Path) -> None:
    stack = Stack(workdir=tmp_path, http_ports={"intake": 8080, CONSOLE: CONSOLE_HTTP_PORT})
    stack.write_operator_file()
    assert "console_url" not in json.loads(stack.operator_file.read_text())
    password = stack.console_admin_password()
    assert password == stack.console_admin_password(), "one per data folder"
    stack.console_login = {"username": "admin", "password": password}
    stack.write_operator_file()
    found = json.loads(stack.operator_file.read_text())
    assert found["console_url"] == "http://127.0.0.1:8084/"
    assert found["console_admin"] == {"username": "admin", "password": password}
    assert stat.S_IMODE(stack.operator_file.stat().st_mode) == 0o600


def test_the_console_gets_urls_and_its_own_key_but_no_database_or_bus_login(
    tmp_path: Path,
) -> None:
    stack = Stack(workdir=tmp_path, http_ports={"intake": 18080, "sla": 18082, "notify": 18083})
    env = stack.console_env()
    assert env["CONSOLE_INTAKE_URL"] == "http://127.0.0.1:18080"
    assert env["CONSOLE_SLA_URL"] == "http://127.0.0.1:18082"
    assert env["CONSOLE_NOTIFY_URL"] == "http://127.0.0.1:18083"
    assert len(env["CONSOLE_COOKIE_KEY"]) >= 32
    assert env["CONSOLE_COOKIE_KEY"] == stack.console_env()["CONSOLE_COOKIE_KEY"]
    assert not any(k.startswith(("NATS_", "MONGO_", "LAPOR_PII_")) for k in env)
    assert CONSOLE_HTTP_PORT == 8084 and GATEWAY_HTTP_PORT == 8085
