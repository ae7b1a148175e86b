from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore")

    http_port: int = Field(default=8081, ge=1, le=65535)
