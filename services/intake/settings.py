from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    http_port: int = Field(default=8080, ge=1, le=65535)
    # Keyed hash of phone numbers for de-duplication and rate limits; without it
    # intake cannot run, so there is deliberately no default.
    phone_hash_key: SecretStr = Field(validation_alias="LAPOR_PHONE_HASH_KEY", min_length=16)
    min_words: int = Field(default=3, ge=1, le=20)
    metrics_interval_s: float = Field(default=30.0, gt=0)
    # How often announcements a crash or an outage left pending are published.
    outbox_sweep_s: float = Field(default=15.0, gt=0)
    # SMS pumping costs money: beyond these, messages are kept but not answered.
    rate_per_hour: int = Field(default=10, ge=1)
    rate_per_day: int = Field(default=30, ge=1)
    duplicate_window_hours: float = Field(default=24, gt=0)
    duplicate_similarity: float = Field(default=90, ge=50, le=100)
