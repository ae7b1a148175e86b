"""Typed settings shared by every service.

Connection settings are unprefixed (`NATS_URL`, `MONGO_URL`, …) because every
service of one deployment talks to the same servers; HTTP settings carry the
service's own prefix (`INTAKE_HTTP_PORT`, …). Invalid values stop the process
at start-up with a message naming the variable.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class InfraSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    nats_user: str | None = Field(default=None, validation_alias="NATS_USER")
    nats_password: str | None = Field(default=None, validation_alias="NATS_PASSWORD")
    mongo_url: str = Field(default="mongodb://127.0.0.1:27017", validation_alias="MONGO_URL")
    mongo_db: str = Field(default="lapor", validation_alias="MONGO_DB", pattern=r"^[A-Za-z0-9_-]+$")
    data_dir: Path = Field(default=Path("data"), validation_alias="LAPOR_DATA_DIR")
    log_level: LogLevel = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: Literal["json", "text"] = Field(default="json", validation_alias="LOG_FORMAT")

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"NATS_URL must be nats://host:port (got {url.strip()!r})")
        return value

    @field_validator("mongo_url")
    @classmethod
    def _mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("MONGO_URL must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir_exists(cls, value: Path) -> Path:
        if not (value / "regions").is_dir():
            raise ValueError(f"LAPOR_DATA_DIR={value} has no regions/ folder")
        return value


class ServiceSettings(BaseSettings):
    """Base of each service's settings; subclasses set `env_prefix` and the port."""

    model_config = SettingsConfigDict(extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    infra: InfraSettings = Field(default_factory=InfraSettings)
    default_region: str = Field(default="banjar", pattern=r"^[a-z0-9_-]+$")

    def region_dir(self, region: str | None = None) -> Path:
        return self.infra.data_dir / "regions" / (region or self.default_region)
