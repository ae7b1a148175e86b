"""The console's settings: where intake, SLA, notify and the dead-letter watcher
answer, and the cookie key.

The console has no database and no bus login: every read and every action goes
through the services' HTTP APIs with the officer's own session token.
"""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lapor.runtime.settings import (
    DEVELOPMENT,
    MIN_SECRET_LENGTH,
    DeploymentEnv,
    LogLevel,
    require_real_secrets,
)


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    env: DeploymentEnv = Field(default="production", validation_alias="LAPOR_ENV")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8084, ge=1, le=65535)
    intake_url: HttpUrl = HttpUrl("http://127.0.0.1:8080")
    sla_url: HttpUrl = HttpUrl("http://127.0.0.1:8082")
    notify_url: HttpUrl = HttpUrl("http://127.0.0.1:8083")
    # The dead-letter service's API (services.deadletters): admins' "Pesan gagal" page.
    dlq_url: HttpUrl = HttpUrl("http://127.0.0.1:8087")
    hotspots_url: HttpUrl = HttpUrl("http://127.0.0.1:8086")
    # Seals the session cookie (the bearer token inside must stay unreadable in the
    # browser) and keys the CSRF tokens. No default: each deployment makes its own.
    cookie_key: SecretStr
    # Secure cookies travel over HTTPS only; only a development stack on plain
    # http://127.0.0.1 may turn it off. Unset: on everywhere but in development.
    secure_cookies: bool | None = None
    # One call to a service; a page makes a few, well within a browser's patience.
    backend_timeout_s: float = Field(default=10.0, gt=0, le=60)
    default_region: str = Field(default="banjar", pattern=r"^[a-z0-9_-]+$")
    data_dir: Path = Field(default=Path("data"), validation_alias="LAPOR_DATA_DIR")
    log_level: LogLevel = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: Literal["json", "text"] = Field(default="json", validation_alias="LOG_FORMAT")
    http_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 2**20)

    @field_validator("cookie_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_SECRET_LENGTH:
            raise ValueError(f"CONSOLE_COOKIE_KEY: at least {MIN_SECRET_LENGTH} bytes")
        return value

    @model_validator(mode="after")
    def _real_secrets(self) -> Self:
        require_real_secrets(self.env, [("CONSOLE_COOKIE_KEY", self.cookie_key.get_secret_value())])
        if self.secure_cookies is None:
            self.secure_cookies = self.env != DEVELOPMENT
        return self

    @property
    def cookies_secure(self) -> bool:
        return bool(self.secure_cookies)

    def region_dir(self) -> Path:
        return self.data_dir / "regions" / self.default_region
