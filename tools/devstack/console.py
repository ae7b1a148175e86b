"""The console: officers' and admins' web application (services/console/)."""

from __future__ import annotations

import os
import secrets
import sys

from tools.devstack.base import StackBase
from tools.devstack.layout import CONSOLE, CONSOLE_ADMIN, DLQ, ROOT
from tools.devstack.nats_auth import new_password


class ConsoleApp(StackBase):
    """Starting the console and making its first admin login."""

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
