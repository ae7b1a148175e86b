import re
from typing import Literal, Self

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from lapor.runtime.pii import PiiSealer
from lapor.runtime.settings import (
    DEVELOPMENT,
    PiiSettings,
    ServiceSettings,
    is_placeholder,
    require_real_secrets,
)

_AGENCY_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
# One send must end well before the consumer's 10 s ack wait, or JetStream would
# hand the same event to another worker while this one is still sending.
MAX_SEND_TIMEOUT_S = 8.0
# Shorter secrets are guessable offline from one captured signature.
MIN_WEBHOOK_SECRET = 16


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    http_port: int = Field(default=8083, ge=1, le=65535)
    # Notify alone opens the reply addresses intake seals: it holds the private key.
    pii: PiiSettings = Field(default_factory=PiiSettings)  # type: ignore[arg-type]
    # How citizen SMS leave: `bus` for a gateway connector on lapor.outbound.sms,
    # `http` through the gateway's HTTP API, `log` for development: SMS still go
    # on the bus (the `lapor sms` command reads replies there) and every message,
    # e-mail and webhook included, is printed instead of sent.
    channel: Literal["bus", "http", "log"] = "bus"
    max_sms_segments: int = Field(default=2, ge=1, le=10)
    # Agency whose contacts hear about complaints no agency owns yet (triage).
    admin_agency: str = Field(default="DISKOMINFO", pattern=_AGENCY_CODE.pattern)
    # How often consumer backlog and redeliveries are read from JetStream.
    metrics_interval_s: float = Field(default=30.0, gt=0)
    # How often failures whose announcement a crash or an outage cut off are published.
    outbox_sweep_s: float = Field(default=15.0, gt=0)
    # How long noting a published failure may wait to go out with others (one command
    # for many notifications); below `outbox_sweep_s`.
    deferred_writes_s: float = Field(default=1.0, gt=0, le=5)

    sms_gateway_url: HttpUrl | None = None
    sms_gateway_auth_header: str = Field(default="Authorization", pattern=_HEADER_NAME.pattern)
    sms_gateway_auth_value: SecretStr | None = None
    sms_gateway_timeout_s: float = Field(default=5.0, gt=0, le=MAX_SEND_TIMEOUT_S)

    # Without a host, e-mail notices fail visibly (event, metric, log) instead of vanishing.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "LAPOR! Kabupaten Banjar <lapor@banjarkab.go.id>"
    smtp_starttls: bool = True
    smtp_timeout_s: float = Field(default=6.0, gt=0, le=MAX_SEND_TIMEOUT_S)

    # JSON object agency code -> secret, e.g. {"PUPR": "..."}; from the environment only.
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=MAX_SEND_TIMEOUT_S)

    # Citizen SMS a region may send per local day: beyond it an SMS is withheld
    # (`budget_exhausted`), counted and alerted on, never sent. 0 sends none.
    # NOTIFY_SMS_DAILY_BUDGETS overrides it per region, e.g. {"banjar": 20000}.
    sms_daily_budget: int = Field(default=5000, ge=0)
    sms_daily_budgets: dict[str, int] = Field(default_factory=dict)

    retry_base_s: float = Field(default=2.0, gt=0, le=60)
    retry_factor: float = Field(default=3.0, ge=1, le=10)
    retry_max_delay_s: float = Field(default=600.0, gt=0, le=3600)
    retry_max_attempts: int = Field(default=7, ge=1, le=20)
    # Waits up to this long happen inside the handler; longer ones by redelivery.
    # Off by default: a handler that sleeps holds up the whole fetched batch, and so
    # every citizen acknowledgement queued behind one failing official notice.
    retry_inline_max_s: float = Field(default=0.0, ge=0, le=5)

    @field_validator("smtp_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        address = value.rsplit("<", 1)[-1].rstrip(">").strip()
        if not _EMAIL.match(address):
            raise ValueError(f"NOTIFY_SMTP_FROM is not an e-mail address: {value!r}")
        return value

    @field_validator("sms_daily_budgets")
    @classmethod
    def _budgets(cls, value: dict[str, int]) -> dict[str, int]:
        for region, budget in value.items():
            if budget < 0:
                raise ValueError(f"NOTIFY_SMS_DAILY_BUDGETS: budget of {region} is negative")
        return value

    def sms_budget(self, region: str | None) -> int:
        """The daily budget of citizen SMS of `region` (the default for an unknown one)."""
        return self.sms_daily_budgets.get(region or "", self.sms_daily_budget)

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for code, secret in value.items():
            if not _AGENCY_CODE.match(code):
                raise ValueError(f"NOTIFY_WEBHOOK_SECRETS: {code!r} is not an agency code")
            if len(secret.get_secret_value()) < MIN_WEBHOOK_SECRET:
                raise ValueError(
                    f"NOTIFY_WEBHOOK_SECRETS: secret of {code} is shorter than "
                    f"{MIN_WEBHOOK_SECRET} characters"
                )
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.channel == "http" and self.sms_gateway_url is None:
            raise ValueError("NOTIFY_CHANNEL=http needs NOTIFY_SMS_GATEWAY_URL")
        if (self.smtp_user is None) != (self.smtp_password is None):
            raise ValueError("set both NOTIFY_SMTP_USER and NOTIFY_SMTP_PASSWORD, or neither")
        if self.retry_max_delay_s < self.retry_base_s:
            raise ValueError("NOTIFY_RETRY_MAX_DELAY_S must not be below NOTIFY_RETRY_BASE_S")
        # Every process seals to LAPOR_PII_PUBLIC_KEY: one that is not this key's half
        # would seal reply addresses nobody can open, so notify refuses to start.
        if self.infra.pii.sealer().key_id != PiiSealer(self.pii.public_key()).key_id:
            raise ValueError("LAPOR_PII_PUBLIC_KEY is not the public half of LAPOR_PII_KEY")
        require_real_secrets(self.infra.env, self.pii.secrets())
        # Passwords chosen by a mail or SMS provider may be short; a copied example never is real.
        if self.infra.env != DEVELOPMENT:
            named = [
                ("NOTIFY_SMTP_PASSWORD", self.smtp_password),
                ("NOTIFY_SMS_GATEWAY_AUTH_VALUE", self.sms_gateway_auth_value),
                *(
                    (f"NOTIFY_WEBHOOK_SECRETS ({code})", s)
                    for code, s in self.webhook_secrets.items()
                ),
            ]
            copied = [name for name, secret in named if secret and is_placeholder(secret)]
            if copied:
                raise ValueError(
                    f"{', '.join(copied)}: a placeholder from .env.example, not a real secret"
                )
        return self
