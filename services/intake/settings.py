import ipaddress
from dataclasses import replace
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from lapor.runtime.settings import (
    HttpLimits,
    ServiceSettings,
    comma_separated,
    require_real_secrets,
)

# The paths that take a photo, and the room around it in a multipart form.
UPLOAD_PATHS = (r"^/api/v1/complaints/[^/]+/photos$", r"^/open311/v2/requests\.(json|xml)$")
FORM_OVERHEAD = 64 * 1024


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    http_port: int = Field(default=8080, ge=1, le=65535)
    # Keyed hash of phone numbers for de-duplication and rate limits; without it
    # intake cannot run, so there is deliberately no default.
    phone_hash_key: SecretStr = Field(validation_alias="LAPOR_PHONE_HASH_KEY", min_length=16)
    # Signs citizens' secret links (HMAC of the tracking id); a secret of its own,
    # never the phone-hash key. Old keys still open links made with them (verify
    # only): during the move off the phone-hash key, that key is listed here.
    citizen_link_key: SecretStr = Field(validation_alias="LAPOR_CITIZEN_LINK_KEY", min_length=16)
    citizen_link_old_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), validation_alias="LAPOR_CITIZEN_LINK_OLD_KEYS"
    )
    min_words: int = Field(default=3, ge=1, le=20)
    metrics_interval_s: float = Field(default=30.0, gt=0)
    # The complaint gauges' counters: stored changes added every few seconds, and
    # recounted (on one replica) this often to repair what a crash lost.
    counts_flush_s: float = Field(default=5.0, gt=0, le=10)
    counts_reconcile_minutes: float = Field(default=30.0, gt=0)
    # How often announcements a crash or an outage left pending are published.
    outbox_sweep_s: float = Field(default=15.0, gt=0)
    # How long the clearing of a published announcement or of a worklist mark may wait
    # to go out with others (one command for many complaints); below the sweeps' grace.
    deferred_writes_s: float = Field(default=1.0, gt=0, le=5)
    # SMS pumping costs money: beyond these, messages are kept but not answered.
    rate_per_hour: int = Field(default=10, ge=1)
    rate_per_day: int = Field(default=30, ge=1)
    duplicate_window_hours: float = Field(default=24, gt=0)
    duplicate_similarity: float = Field(default=90, ge=50, le=100)
    # How long a login session's token works.
    session_hours: float = Field(default=12, gt=0, le=24 * 7)
    # Expired sessions and failed logins older than `login_failure_days` are deleted
    # this often (sessions.start_purge); failures are kept at least a day for review.
    login_purge_s: float = Field(default=600.0, gt=0)
    login_failure_days: float = Field(default=30, ge=1)
    # Peers (the console) whose X-Forwarded-For names the browser behind a login, so
    # failed logins are counted per browser address rather than per console.
    login_proxies: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1/32", "::1/128")
    # Photos of a complaint (services/intake/photos.py): each at most this large.
    photo_max_bytes: int = Field(default=5 * 1024 * 1024, ge=64 * 1024, le=16 * 2**20)

    _split = field_validator("citizen_link_old_keys", mode="before")(comma_separated)
    _split_proxies = field_validator("login_proxies", mode="before")(comma_separated)

    @field_validator("login_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # fails fast on a typo
        return value

    def login_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.login_proxies)

    @model_validator(mode="after")
    def _separate_real_secrets(self) -> "IntakeSettings":
        phone = self.phone_hash_key.get_secret_value()
        link = self.citizen_link_key.get_secret_value()
        # One secret per purpose: a leak or a rotation of one leaves the others.
        # (Intake never holds LAPOR_PII_KEY: only its public half.)
        if link == phone:
            raise ValueError("LAPOR_CITIZEN_LINK_KEY must differ from LAPOR_PHONE_HASH_KEY")
        require_real_secrets(
            self.infra.env,
            [
                ("LAPOR_PHONE_HASH_KEY", phone),
                ("LAPOR_CITIZEN_LINK_KEY", link),
                *(
                    ("LAPOR_CITIZEN_LINK_OLD_KEYS", key.get_secret_value())
                    for key in self.citizen_link_old_keys
                ),
            ],
        )
        return self

    def http_limits(self) -> HttpLimits:
        # Photo uploads only: every other body keeps the general limit.
        larger = self.photo_max_bytes + FORM_OVERHEAD
        return replace(
            super().http_limits(),
            larger_bodies=tuple((path, larger) for path in UPLOAD_PATHS),
        )

    def citizen_link_keys(self) -> tuple[bytes, tuple[bytes, ...]]:
        """The key that signs new citizen links, and the old ones that still open links."""
        return (
            self.citizen_link_key.get_secret_value().encode(),
            tuple(key.get_secret_value().encode() for key in self.citizen_link_old_keys),
        )
