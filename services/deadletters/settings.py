from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import PiiSettings, ServiceSettings


class DeadLetterSettings(ServiceSettings):
    """`DLQ_HTTP_PORT=0`: the watcher alone, without the API (a second replica).

    The connection settings (`NATS_URL`, `NATS_USER`, `MONGO_URL`, ...) and the
    public personal-data key, which seals what is stored, are every service's.
    """

    model_config = SettingsConfigDict(env_prefix="DLQ_", extra="ignore")

    http_port: int = Field(default=8087, ge=0, le=65535)


def private_key() -> PiiSettings | None:
    """The private personal-data key, where the operator gave it (`LAPOR_PII_KEY`):
    it lets admins replay from the console. Optional, but refused when malformed."""
    import os

    if not os.environ.get("LAPOR_PII_KEY"):
        return None
    return PiiSettings()  # type: ignore[call-arg]
