"""What notify needs from region data: agency names, out-of-scope guidance, local dates."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lapor.contracts import AGENCY_OUT_OF_SCOPE
from lapor.directory import AgencyDirectory, load_directory
from lapor.regions import Region
from services.notify.templates import TemplateSet, format_date_id

# Indonesia's three time zones as citizens name them.
_ZONE_ABBREVIATIONS = {
    "Asia/Jakarta": "WIB",
    "Asia/Pontianak": "WIB",
    "Asia/Makassar": "WITA",
    "Asia/Jayapura": "WIT",
}


@dataclass(frozen=True)
class AgencyCatalog:
    directories: Mapping[str, AgencyDirectory]

    @classmethod
    def load(cls, data_dir: Path, regions: Mapping[str, Region]) -> "AgencyCatalog":
        return cls({rid: load_directory(data_dir / "regions" / rid) for rid in regions})

    def name_of(self, region: str, code: str) -> str:
        return self.directories[region].name_of(code)

    def guidance(self, region: str, category: str | None = None) -> str:
        agency = self.directories[region].agency(AGENCY_OUT_OF_SCOPE)
        specific = agency.guidance_for(category) if category else None
        return (specific or agency.guidance or "").strip()


class SmsRenderer:
    """Renders citizen SMS; dates are shown as local calendar dates of the region."""

    def __init__(self, templates: TemplateSet, regions: Mapping[str, Region]) -> None:
        self.templates = templates
        self.zones = {rid: _ZONE_ABBREVIATIONS.get(r.timezone, "WIB") for rid, r in regions.items()}

    def render_sms(self, template: str, values: Mapping[str, Any], region: str | None) -> str:
        zone = self.zones.get(region or "", "WITA")
        shown = {
            key: format_date_id(value, zone) if isinstance(value, (date, datetime)) else value
            for key, value in values.items()
        }
        return self.templates.render(template, **shown)
