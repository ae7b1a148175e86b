"""Typed settings shared by every service.

Connection settings are unprefixed (`NATS_URL`, `MONGO_URL`, …) because every
service of one deployment talks to the same servers; HTTP settings carry the
service's own prefix (`INTAKE_HTTP_PORT`, …). Invalid values stop the process
at start-up with a message naming the variable.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lapor.runtime.pii import (
    PiiCipher,
    PiiKeyError,
    PiiOpener,
    PiiSealer,
    new_key,
    public_key_of,
)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# `LAPOR_ENV`: only a development stack (`make run`, the tests) says
# `development`; anything deployed is `production`, the default, and must bring
# real secrets.
DeploymentEnv = Literal["development", "production"]
DEVELOPMENT: DeploymentEnv = "development"

# Every placeholder in .env.example contains one of these (checked by
# tests/unit/foundation/test_secrets.py): a secret that does is a copied example.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "placeholder")
MIN_SECRET_LENGTH = 32
# A random secret of 32 characters has far more; `aaaa…` or `abababab…` has not.
MIN_SECRET_DISTINCT = 10


def is_placeholder(value: str | SecretStr) -> bool:
    """Whether `value` was copied from .env.example."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def secret_problem(value: str) -> str | None:
    """Why `value` is not a real secret, or None. The value itself is never in the reason."""
    if is_placeholder(value):
        return "is a placeholder from .env.example"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    if len(set(value)) < MIN_SECRET_DISTINCT:
        return f"has fewer than {MIN_SECRET_DISTINCT} distinct characters"
    return None


def require_real_secrets(env: DeploymentEnv, named: Iterable[tuple[str, str | None]]) -> None:
    """Outside development, refuse a placeholder or weak secret: the error names the
    variable and the rule it breaks, never the value."""
    if env == DEVELOPMENT:
        return
    problems = [
        f"{name} {problem}"
        for name, value in named
        if value is not None and (problem := secret_problem(value))
    ]
    if problems:
        raise ValueError(
            "; ".join(problems) + " (generate real secrets as .env.example shows; "
            "only a development stack may set LAPOR_ENV=development)"
        )


def url_passwords(name: str, urls: str) -> list[tuple[str, str | None]]:
    """The passwords inside a (comma-separated) URL setting, named after it."""
    found: list[tuple[str, str | None]] = []
    for url in urls.split(","):
        netloc = urlsplit(url.strip()).netloc
        userinfo, at, _hosts = netloc.rpartition("@")
        if at and ":" in userinfo:
            found.append((f"the password in {name}", unquote(userinfo.split(":", 1)[1])))
    return found


def comma_separated(cls: type, value: object) -> object:
    """A list setting given as `a,b,c` in the environment (for `NoDecode` fields)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class PiiPublicKeySettings(BaseSettings):
    """The public half of the personal-data key (`LAPOR_PII_PUBLIC_KEY`), which every
    service and the dead-letter watcher hold: it seals reply addresses in events,
    kept payloads and dead letters. Nothing it sealed opens without the private key,
    so a compromised service reads no stored or published phone number."""

    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    public_key: str = Field(validation_alias="LAPOR_PII_PUBLIC_KEY")

    @field_validator("public_key")
    @classmethod
    def _usable(cls, value: str) -> str:
        # Refused in development too: a placeholder or a malformed key seals nothing.
        if is_placeholder(value):
            raise ValueError(
                "LAPOR_PII_PUBLIC_KEY is a placeholder from .env.example; "
                "print the real one with `python -m lapor.runtime.pii public-key`"
            )
        try:
            PiiSealer(value)
        except PiiKeyError as exc:
            raise ValueError(f"LAPOR_PII_PUBLIC_KEY: {exc}") from None
        return value

    def sealer(self) -> PiiSealer:
        return PiiSealer(self.public_key)


class PiiSettings(BaseSettings):
    """The private personal-data key: only notify (its contacts, the reply addresses
    in events) and the operator's tools (`lapor dlq list` / `replay`) get it.

    Rotation: set the new key and keep the old one in `LAPOR_PII_OLD_KEYS`
    (comma-separated) until no value sealed with it is left; the processes that
    seal get the new key's public half at the same time.
    """

    # A rejected key must not be echoed in the start-up error.
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    key: SecretStr = Field(validation_alias="LAPOR_PII_KEY")
    old_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), validation_alias="LAPOR_PII_OLD_KEYS"
    )

    _split = field_validator("old_keys", mode="before")(comma_separated)

    @model_validator(mode="after")
    def _usable(self) -> "PiiSettings":
        try:
            self.opener()
        except PiiKeyError as exc:
            raise ValueError(f"LAPOR_PII_KEY / LAPOR_PII_OLD_KEYS: {exc}") from None
        return self

    def _old(self) -> tuple[str, ...]:
        return tuple(k.get_secret_value() for k in self.old_keys)

    def cipher(self) -> PiiCipher:
        return PiiCipher(self.key.get_secret_value(), self._old())

    def opener(self) -> PiiOpener:
        return PiiOpener(self.key.get_secret_value(), self._old())

    def public_key(self) -> str:
        return public_key_of(self.key.get_secret_value())

    def secrets(self) -> list[tuple[str, str | None]]:
        return [
            ("LAPOR_PII_KEY", self.key.get_secret_value()),
            *(("LAPOR_PII_OLD_KEYS", key) for key in self._old()),
        ]


class InfraSettings(BaseSettings):
    # A rejected password must not be echoed in the start-up error.
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    env: DeploymentEnv = Field(default="production", validation_alias="LAPOR_ENV")

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    nats_user: str | None = Field(default=None, validation_alias="NATS_USER")
    nats_password: str | None = Field(default=None, validation_alias="NATS_PASSWORD")
    # Copies of each stream a service creates: 1 on a single server, 3 on a
    # three-node JetStream cluster (a stream survives the loss of one node).
    nats_stream_replicas: int = Field(
        default=1, ge=1, le=5, validation_alias="NATS_STREAM_REPLICAS"
    )
    mongo_url: str = Field(default="mongodb://127.0.0.1:27017", validation_alias="MONGO_URL")
    mongo_db: str = Field(default="lapor", validation_alias="MONGO_DB", pattern=r"^[A-Za-z0-9_-]+$")
    data_dir: Path = Field(default=Path("data"), validation_alias="LAPOR_DATA_DIR")
    log_level: LogLevel = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: Literal["json", "text"] = Field(default="json", validation_alias="LOG_FORMAT")
    # The public key only: a process that may be compromised reads no sealed data.
    pii: PiiPublicKeySettings = Field(default_factory=PiiPublicKeySettings)  # type: ignore[arg-type]

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                # Named without its login: the password must not reach the log.
                shown = urlsplit(url.strip())._replace(netloc=url.strip().rpartition("@")[2])
                raise ValueError(f"NATS_URL must be nats://host:port (got {shown.geturl()!r})")
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

    @model_validator(mode="after")
    def _real_secrets(self) -> "InfraSettings":
        require_real_secrets(self.env, self.secrets())
        return self

    def secrets(self) -> list[tuple[str, str | None]]:
        """Every secret these settings hold, by the variable it came from."""
        return [
            ("NATS_PASSWORD", self.nats_password),
            *url_passwords("NATS_URL", self.nats_url),
            *url_passwords("MONGO_URL", self.mongo_url),
        ]


def documentation_infra(**values: Any) -> InfraSettings:
    """Built-in defaults, not the environment, for generating documents from the code:
    no secret is needed, so the personal-data key is a throwaway one."""
    pii = PiiPublicKeySettings.model_construct(public_key=public_key_of(new_key()))
    return InfraSettings.model_construct(pii=pii, **values)


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP client may send: body size, mutating requests and anonymous
    reads per minute."""

    max_body_bytes: int = 64 * 1024
    # Token bucket per client address: `burst` requests at once, refilled at
    # `per_minute`; 0 turns the limit off (benchmarks, a trusted proxy in front).
    rate_per_minute: int = 60
    rate_burst: int = 20
    # Anonymous reads of listings, reports and public status (GET without a bearer
    # token), per client address, in a bucket of their own; 0 turns it off.
    read_rate_per_minute: int = 600
    read_rate_burst: int = 120
    # Paths (regular expressions) that take larger bodies than `max_body_bytes`, and
    # how large: uploads of photos.
    larger_bodies: tuple[tuple[str, int], ...] = ()


class ServiceSettings(BaseSettings):
    """Base of each service's settings; subclasses set `env_prefix` and the port."""

    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    # The largest request body accepted; complaint texts are a few KiB at most.
    http_max_body_bytes: int = Field(default=HttpLimits.max_body_bytes, ge=1024, le=16 * 2**20)
    http_rate_per_minute: int = Field(default=HttpLimits.rate_per_minute, ge=0)
    http_rate_burst: int = Field(default=HttpLimits.rate_burst, ge=1)
    http_read_rate_per_minute: int = Field(default=HttpLimits.read_rate_per_minute, ge=0)
    http_read_rate_burst: int = Field(default=HttpLimits.read_rate_burst, ge=1)
    infra: InfraSettings = Field(default_factory=InfraSettings)
    default_region: str = Field(default="banjar", pattern=r"^[a-z0-9_-]+$")

    def region_dir(self, region: str | None = None) -> Path:
        return self.infra.data_dir / "regions" / (region or self.default_region)

    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            max_body_bytes=self.http_max_body_bytes,
            rate_per_minute=self.http_rate_per_minute,
            rate_burst=self.http_rate_burst,
            read_rate_per_minute=self.http_read_rate_per_minute,
            read_rate_burst=self.http_read_rate_burst,
        )
