from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    http_port: int = Field(default=8083, ge=1, le=65535)
    # `log` also prints every outgoing message (phone masked) for local development.
    channel: Literal["bus", "log"] = "bus"
    max_sms_segments: int = Field(default=2, ge=1, le=10)
