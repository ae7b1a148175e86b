from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from lapor.runtime.settings import ServiceSettings, comma_separated, require_real_secrets


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
    # How often announcements a crash or an outage left pending are published.
    outbox_sweep_s: float = Field(default=15.0, gt=0)
    # SMS pumping costs money: beyond these, messages are kept but not answered.
    rate_per_hour: int = Field(default=10, ge=1)
    rate_per_day: int = Field(default=30, ge=1)
    duplicate_window_hours: float = Field(default=24, gt=0)
    duplicate_similarity: float = Field(default=90, ge=50, le=100)

    _split = field_validator("citizen_link_old_keys", mode="before")(comma_separated)

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

    def citizen_link_keys(self) -> tuple[bytes, tuple[bytes, ...]]:
        """The key that signs new citizen links, and the old ones that still open links."""
        return (
            self.citizen_link_key.get_secret_value().encode(),
            tuple(key.get_secret_value().encode() for key in self.citizen_link_old_keys),
        )
