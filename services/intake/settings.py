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
