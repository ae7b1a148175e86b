"""Every compose healthcheck can fail: each command is run here, without Docker.

The command text of each healthcheck is run locally with the container's
addresses replaced: against an absent endpoint (nothing listening, no file, no
process) it must fail, and against a working one it must pass. HTTP checks get
a stand-in server on a free port (answering 200, or 500 for an unhealthy
service) and NATS's check the real nats-server. The dead-letter watcher's
check runs in a PID namespace of its own (`unshare`, like a container's), with
and without a stand-in process named like the watcher.

Not exercised here: the mongosh checks (mongo, the scale variant's members
and mongo-init); mongosh is not installed on this machine and FerretDB has no
replica set. They log in and evaluate a condition, so a stopped server fails
them by construction.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "base": ROOT / "docker-compose.yml",
    "scale": ROOT / "docker-compose.scale.yml",
    "tls": ROOT / "docker-compose.tls.yml",
}

HTTP = "http"
WATCHER = "watcher"
CERT_FILES = "cert files"
MONGOSH = "mongosh (not exercised)"

# How each healthcheck is exercised; a new one has to be added here.
KINDS = {
    ("base", "mongo"): MONGOSH,
    ("base", "nats"): HTTP,
    ("base", "intake"): HTTP,
    ("base", "router"): HTTP,
    ("base", "sla"): HTTP,
    ("base", "hotspots"): HTTP,
    ("base", "notify"): HTTP,
    ("base", "gateway"): HTTP,
    ("base", "console"): HTTP,
    ("base", "kannel"): HTTP,
    ("base", "dlq"): WATCHER,
    ("base", "edge"): HTTP,
    ("base", "edge-cert"): CERT_FILES,
    ("base", "prometheus"): HTTP,
    ("base", "grafana"): HTTP,
    ("base", "alertmanager"): HTTP,
    ("scale", "nats"): HTTP,
    ("scale", "nats-2"): HTTP,
    ("scale", "nats-3"): HTTP,
    ("scale", "mongo-2"): MONGOSH,
    ("scale", "mongo-3"): MONGOSH,
    ("scale", "mongo-init"): MONGOSH,
    ("tls", "nats-tls-cert"): CERT_FILES,
}
URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[^\s'\"]*)")


def _healthchecks() -> dict[tuple[str, str], list[str]]:
    found = {}
    for variant, path in FILES.items():
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            test = (service.get("healthcheck") or {}).get("test")
            if test:
                found[(variant, name)] = [test] if isinstance(test, str) else list(test)
    return found


HEALTHCHECKS = _healthchecks()


def _of_kind(kind: str) -> list[tuple[str, str]]:
    return sorted(key for key, value in KINDS.items() if value == kind)


def _argv(test: list[str], replace: dict[str, str]) -> list[str]:
    """The command a container runtime would run, with local substitutions."""

    def local(text: str) -> str:
        for old, new in replace.items():
            text = text.replace(old, new)
        return text

    if test[0] == "CMD-SHELL":
        # `$$` in the compose file is a `$` for the container's shell.
        return ["sh", "-c", local(test[1].replace("$$", "$"))]
    assert test[0] == "CMD", test
    argv = [local(arg) for arg in test[1:]]
    if argv[0] == "python":
        argv[0] = sys.executable
    return argv


def _run(argv: list[str], **kwargs: Any) -> int:
    return subprocess.run(argv, capture_output=True, timeout=30, **kwargs).returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_healthcheck_is_classified() -> None:
    assert set(HEALTHCHECKS) == set(KINDS), set(HEALTHCHECKS) ^ set(KINDS)


# --------------------------------------------------------------------------
# HTTP checks (wget in the infrastructure images, python in the app image)
# --------------------------------------------------------------------------


class _StandIn(http.server.BaseHTTPRequestHandler):
    status = 200
    path_expected = "/"

    def do_GET(self) -> None:
        # A check may add a query of its own (a password from the environment).
        path = self.path if "?" in self.path_expected else self.path.split("?", 1)[0]
        self.send_response(self.status if path == self.path_expected else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _serve(path: str, status: int) -> tuple[http.server.HTTPServer, int]:
    handler = type("Handler", (_StandIn,), {"status": status, "path_expected": path})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@pytest.mark.parametrize("key", _of_kind(HTTP), ids=lambda k: "-".join(k))
def test_http_healthcheck_fails_without_the_service(key: tuple[str, str]) -> None:
    test = HEALTHCHECKS[key]
    port, path = URL.search(" ".join(test)).groups()  # type: ignore[union-attr]
    absent = str(_free_port())
    assert _run(_argv(test, {f"127.0.0.1:{port}": f"127.0.0.1:{absent}"})) != 0

    for status, healthy in ((500, False), (200, True)):
        server, local = _serve(path, status)
        try:
            code = _run(_argv(test, {f"127.0.0.1:{port}": f"127.0.0.1:{local}"}))
        finally:
            server.shutdown()
            server.server_close()
        assert (code == 0) is healthy, f"{key}: exit {code} on HTTP {status}"


def _nats_server() -> str | None:
    beside_python = Path(sys.executable).with_name("nats-server")
    return shutil.which("nats-server") or (str(beside_python) if beside_python.exists() else None)


@pytest.fixture()
def nats_monitor(tmp_path: Path) -> Iterator[int]:
    server = _nats_server()
    if server is None:
        pytest.skip("nats-server is not installed")
    monitor = _free_port()
    command = [server, "-a", "127.0.0.1", "-p", str(_free_port()), "-m", str(monitor)]
    process = subprocess.Popen(
        [*command, "-js", "-sd", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield monitor
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_nats_healthcheck_passes_against_a_real_nats_server(nats_monitor: int) -> None:
    test = _argv(HEALTHCHECKS[("base", "nats")], {"127.0.0.1:8222": f"127.0.0.1:{nats_monitor}"})
    deadline = time.monotonic() + 20
    while _run(test) != 0:
        assert time.monotonic() < deadline, "nats-server never reported healthy"
        time.sleep(0.1)


# --------------------------------------------------------------------------
# The dead-letter watcher: a process check in a PID namespace
# --------------------------------------------------------------------------


def _unshare() -> list[str]:
    command = ["unshare", "--pid", "--fork", "--mount-proc"]
    if shutil.which("unshare") is None or _run([*command, "true"]) != 0:
        pytest.skip("no PID namespace here (unshare needs root)")
    return command


@pytest.fixture()
def stand_in_watcher(tmp_path: Path) -> Path:
    """A package named like the watcher's that only waits."""
    package = tmp_path / "services" / "deadletters"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import time\n\ntime.sleep(60)\n")
    return tmp_path


def _in_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_unshare(), "bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def _check_text(test: list[str]) -> str:
    return " ".join(f"'{arg}'" for arg in _argv(test, {}))


def test_watcher_healthcheck_fails_without_the_watcher(stand_in_watcher: Path) -> None:
    test = HEALTHCHECKS[("base", "dlq")]
    # A process with the module's name among its arguments does not count; the
    # check runs once that decoy has started.
    script = (
        "(exec -a python bash -c 'sleep 30; exit' services.deadletters) & "
        "until tr '\\0' ' ' < /proc/$!/cmdline | grep -q services.deadletters; do :; done; "
        f"{_check_text(test)}"
    )
    result = _in_namespace(script, stand_in_watcher)
    # A plain "no" (exit 1), not a crash of the check.
    assert (result.returncode, result.stderr) == (1, ""), result


def test_watcher_healthcheck_passes_while_the_watcher_runs(stand_in_watcher: Path) -> None:
    test = HEALTHCHECKS[("base", "dlq")]
    # `exec -a python`: the argument list compose gives the watcher.
    script = (
        f"(exec -a python {sys.executable} -m services.deadletters) & "
        f"for i in $(seq 100); do {_check_text(test)} && exit 0; sleep 0.1; done; exit 1"
    )
    assert _in_namespace(script, stand_in_watcher).returncode == 0


def test_a_grep_for_the_module_name_finds_itself(stand_in_watcher: Path) -> None:
    # Why the check compares argument lists: the former check grepped every
    # command line for the module name and matched its own.
    script = "grep -qs 'services.deadletters' /proc/[0-9]*/cmdline"
    assert _in_namespace(script, stand_in_watcher).returncode == 0, "no watcher, yet it passes"


# --------------------------------------------------------------------------
# Certificate generators: healthy once their files are there
# --------------------------------------------------------------------------

GENERATORS = {
    ("base", "edge-cert"): ROOT / "ops" / "tls" / "edge-self-signed.sh",
    ("tls", "nats-tls-cert"): ROOT / "ops" / "tls" / "nats-self-signed.sh",
}


@pytest.mark.parametrize("key", _of_kind(CERT_FILES), ids=lambda k: "-".join(k))
def test_certificate_healthcheck_needs_the_files(key: tuple[str, str], tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    test = _argv(HEALTHCHECKS[key], {"/tls/": f"{tmp_path}/"})
    assert _run(test) != 0, "healthy without a certificate"
    generated = subprocess.run(
        ["bash", str(GENERATORS[key]), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LAPOR_TLS_HOSTNAME": "localhost"},
    )
    assert generated.returncode == 0, generated.stderr
    assert _run(test) == 0
