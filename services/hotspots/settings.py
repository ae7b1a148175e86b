from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lapor.runtime.settings import ServiceSettings
from services.hotspots.domain import DEFAULT_SIMILARITY, DEFAULT_WINDOW


class HotspotSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOTSPOTS_", extra="ignore")

    http_port: int = Field(default=8086, ge=1, le=65535)
    # Keyword similarity (0-100) from which two complaints are one problem; measured
    # on tests/data/hotspots_corpus_banjar.jsonl (README, Hotspots).
    similarity: float = Field(default=DEFAULT_SIMILARITY, ge=1, le=100)
    # How far apart in time two complaints about one problem may be received.
    window_days: float = Field(default=DEFAULT_WINDOW.days, gt=0, le=90)
    # How often the open-hotspots gauge is recomputed from the database.
    metrics_interval_s: float = Field(default=30.0, gt=0)
    # Clearing published announcements waits this long, to go out with others.
    deferred_writes_s: float = Field(default=1.0, gt=0, le=5)
