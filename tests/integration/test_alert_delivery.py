"""An alert reaches the operators: a real Alertmanager with the project's config.

ops/alertmanager/entrypoint.sh renders the project's template and starts
Alertmanager (Debian's `prometheus-alertmanager`; skipped where it is not
installed) exactly as the compose service does. A local SMTP server that
accepts only the configured login stands in for notify's mail provider, and a
local HTTP server for the webhook. One critical alert is posted to
Alertmanager's API; the test waits until both the e-mail and the webhook call
have arrived.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_DIR = ROOT / "ops" / "alertmanager"
USER = "alerts@banjarkab.go.id"
# Characters that would break a naively rendered YAML file or shell line.
PASSWORD = 'it\'s a "p&ss\\word" ${HOME} #1: {x}'
RECIPIENT = "operators@banjarkab.go.id"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _only_the_configured_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == USER
        and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok)


@pytest.fixture()
def mailbox() -> Iterator[tuple[_Mailbox, int]]:
    box = _Mailbox()
    port = _free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=_only_the_configured_login,
        auth_require_tls=False,
        auth_required=True,
        # aiosmtpd's LOGIN prompts ("User Name") are not the ones Alertmanager
        # expects ("Username:"); real providers offer PLAIN as well.
        auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture()
def webhook() -> Iterator[tuple[list[dict[str, Any]], str]]:
    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}/hook?token=t0k&x='y'"
    finally:
        server.shutdown()
        server.server_close()


# A plain local relay, on purpose: see NOTIFY_SMTP_STARTTLS below.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_critical_alert_is_mailed_and_posted(
    tmp_path: Path,
    mailbox: tuple[_Mailbox, int],
    webhook: tuple[list[dict[str, Any]], str],
) -> None:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("Alertmanager is not installed (Debian package prometheus-alertmanager)")
    box, smtp_port = mailbox
    hooks, hook_url = webhook
    api = _free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "ALERTMANAGER": binary,
        "NOTIFY_SMTP_HOST": "127.0.0.1",
        "NOTIFY_SMTP_PORT": str(smtp_port),
        "NOTIFY_SMTP_FROM": "LAPOR! Kabupaten Banjar <lapor@banjarkab.go.id>",
        "NOTIFY_SMTP_USER": USER,
        "NOTIFY_SMTP_PASSWORD": PASSWORD,
        # A plain local relay; Go's SMTP client sends the password only to localhost then.
        "NOTIFY_SMTP_STARTTLS": "false",
        "LAPOR_ALERT_EMAIL_TO": RECIPIENT,
        "LAPOR_ALERT_WEBHOOK_URL": hook_url,
    }
    process = subprocess.Popen(
        [
            "sh",
            str(ALERTMANAGER_DIR / "entrypoint.sh"),
            str(ALERTMANAGER_DIR / "alertmanager.yml.tmpl"),
            str(tmp_path / "alertmanager.yml"),
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{api}",
            "--cluster.listen-address=",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("w"),
    )
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/-/ready", timeout=2):
                    return True
            except OSError:
                return False

        _wait_for(ready, 30, "Alertmanager to start")
        alert = {
            "labels": {"alertname": "LaporSlaSweepStalled", "severity": "critical"},
            "annotations": {"summary": "The SLA sweep has not completed for more than 5 minutes"},
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{api}/api/v2/alerts",
            data=json.dumps([alert]).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

        # The critical route waits 10 s to group alerts, then sends at once.
        _wait_for(lambda: bool(hooks) and bool(box.messages), 60, "the e-mail and the webhook")
    finally:
        process.terminate()
        process.wait(timeout=10)

    (call,) = hooks
    assert call["path"] == "/hook?token=t0k&x='y'"
    assert call["body"]["status"] == "firing"
    assert call["body"]["commonLabels"]["alertname"] == "LaporSlaSweepStalled"

    (recipients, content), *_ = box.messages
    assert recipients == [RECIPIENT]
    mail = message_from_bytes(content)
    assert "LaporSlaSweepStalled" in str(mail["Subject"])
    assert "lapor@banjarkab.go.id" in str(mail["From"])
