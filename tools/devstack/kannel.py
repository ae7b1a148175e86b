"""The SMS gateway: Kannel (bearerbox, smsbox) with fakesmsc as the SMSC, and the
connector (services.gateway) between Kannel and the bus."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

from tools.devstack.base import StackBase
from tools.devstack.children import _die_with_parent, free_port, wait_for_port
from tools.devstack.layout import GATEWAY, ROOT
from tools.devstack.nats_auth import new_password

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


def _fakesmsc_text(kind: str, data: str) -> str:
    """The text of one SMS (or part) as fakesmsc prints it: plain `text`, or URL-encoded
    `data` (UTF-8 here) or `ucs-2` (UTF-16BE)."""
    from urllib.parse import unquote_to_bytes

    if kind == "text":
        return data
    raw = unquote_to_bytes(data.replace("+", " "))
    return raw.decode("utf-16-be" if kind in ("ucs2", "ucs-2") else "utf-8", "replace")


class KannelGateway(StackBase):
    """Kannel's children, the connector, and the fake SMSC standing in for phones."""

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
