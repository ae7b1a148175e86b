"""Region descriptions shared by the services (data/regions/<region>/region.yaml)."""

from pathlib import Path

import phonenumbers
import yaml
from pydantic import BaseModel, Field, field_validator


class Region(BaseModel):
    id: str
    name: str
    timezone: str
    keywords: list[str] = Field(min_length=1)
    # Countries (ISO 3166 alpha-2) whose mobile numbers a web, Open311 or partner
    # submission may give for SMS replies; Indonesia only unless the region says more.
    allowed_sms_countries: list[str] = Field(default_factory=lambda: ["ID"], min_length=1)
    # Kemendagri code of the kabupaten/kota whose gazetteer places.json holds.
    kabupaten: str | None = Field(default=None, pattern=r"^\d{2}\.\d{2}$")

    @field_validator("allowed_sms_countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        codes = [code.strip().upper() for code in value]
        for code in codes:
            if code not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"allowed_sms_countries: {code!r} is not a country code")
        return codes


def load_regions(data_dir: Path) -> dict[str, Region]:
    regions: dict[str, Region] = {}
    for path in sorted((data_dir / "regions").glob("*/region.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        try:
            regions[path.parent.name] = Region(id=path.parent.name, **raw)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if not regions:
        raise ValueError(f"no region.yaml under {data_dir / 'regions'}")
    return regions


def region_keywords(regions: dict[str, Region]) -> dict[str, str]:
    """Keyword (upper case) → region id, as the SMS parser expects."""
    return {kw.upper(): region.id for region in regions.values() for kw in region.keywords}


# The reopen window when a region's sla.yaml names none: SLA's default and notify's fallback.
DEFAULT_REOPEN_WINDOW = ("working_days", 10)


def reopen_window(data_dir: Path, region: str) -> tuple[str, int]:
    """The reply window of `region` in which a citizen may reopen (unit, amount), as set in
    its sla.yaml; SLA counts the exact date, the others only need to say how long."""
    path = data_dir / "regions" / region / "sla.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    window = ((raw or {}).get("reopen") or {}).get("reply_window") or {}
    try:
        return str(window["unit"]), int(window["amount"])
    except (KeyError, TypeError, ValueError):
        return DEFAULT_REOPEN_WINDOW
