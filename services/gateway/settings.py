import re
from typing import Self

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import ServiceSettings, require_real_secrets

# Kannel reads `%` in the URLs it calls as its own escapes: the token stays plain.
_URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
# One sendsms call must end well before the consumer's 10 s ack wait, or JetStream
# would hand the same SMS to another delivery while this one is still submitting.
MAX_KANNEL_TIMEOUT_S = 5.0


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    http_port: int = Field(default=8085, ge=1, le=65535)
    # Kannel's smsbox sendsms interface and the login of its sendsms-user group.
    kannel_sendsms_url: HttpUrl = HttpUrl("http://127.0.0.1:13013/cgi-bin/sendsms")
    kannel_user: str = Field(default="lapor", min_length=1)
    kannel_password: SecretStr
    # bearerbox's admin port: its status page tells whether the SMSC link is up.
    kannel_status_url: HttpUrl = HttpUrl("http://127.0.0.1:13000/status.xml")
    kannel_status_password: SecretStr
    kannel_timeout_s: float = Field(default=4.0, gt=0, le=MAX_KANNEL_TIMEOUT_S)
    status_poll_s: float = Field(default=15.0, gt=0)
    # Where Kannel reaches this service (delivery reports of the SMS it submits).
    callback_url: HttpUrl = HttpUrl("http://127.0.0.1:8085")
    # Kannel passes it in every callback URL: no one else can feed in SMS or receipts.
    callback_token: SecretStr
    # The short code citizens write to, and the sender of every SMS going out.
    short_code: str = Field(default="1708", min_length=1, max_length=16)
    # SMS handed to Kannel per second at most (the SMSC account's contracted rate).
    send_rate_per_s: float = Field(default=10.0, gt=0, le=1000)
    # An SMS Kannel got without answering (smsbox stopped mid-call) may be in its
    # store: the connector waits this long for its delivery report before sending
    # it again. Kannel reports an SMS as soon as the SMSC took it (seconds while the
    # link is up); an SMS still queued for a dead link after this wait goes twice.
    # Below the 18 minutes of redeliveries that precede the dead-letter path.
    unanswered_wait_s: float = Field(default=300.0, ge=0, le=900)

    @field_validator("callback_token")
    @classmethod
    def _plain_token(cls, value: SecretStr) -> SecretStr:
        if not _URL_SAFE.match(value.get_secret_value()):
            raise ValueError("GATEWAY_CALLBACK_TOKEN: letters, digits, - and _ only")
        return value

    @model_validator(mode="after")
    def _real_secrets(self) -> Self:
        require_real_secrets(
            self.infra.env,
            [
                ("GATEWAY_KANNEL_PASSWORD", self.kannel_password.get_secret_value()),
                ("GATEWAY_KANNEL_STATUS_PASSWORD", self.kannel_status_password.get_secret_value()),
                ("GATEWAY_CALLBACK_TOKEN", self.callback_token.get_secret_value()),
            ],
        )
        return self
