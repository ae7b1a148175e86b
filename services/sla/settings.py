from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SLA_", extra="ignore")

    http_port: int = Field(default=8082, ge=1, le=65535)
