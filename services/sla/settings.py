from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SLA_", extra="ignore")

    http_port: int = Field(default=8082, ge=1, le=65535)
    # How often the sweep looks for due timers (SLA_SWEEP_INTERVAL_S). A warning
    # or breach goes out at most this long after its moment.
    sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # Due timers read per query, and complaints fired concurrently within a batch.
    sweep_batch: int = Field(default=200, ge=1, le=10_000)
    sweep_concurrency: int = Field(default=8, ge=1, le=256)
    # A firing claimed by a replica but not settled this long after is published
    # again by any replica (JetStream drops the repeat by its message id).
    republish_after_s: float = Field(default=30.0, ge=0)
    # How long clearing a published deadline announcement may wait to go out with
    # others (one command for many complaints); well below `republish_after_s`.
    deferred_writes_s: float = Field(default=1.0, gt=0, le=5)
    # How often consumer backlog and redeliveries are read from JetStream.
    metrics_interval_s: float = Field(default=30.0, gt=0)
