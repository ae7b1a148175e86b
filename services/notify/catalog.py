"""What notify needs from region data: agency names, out-of-scope guidance, local dates."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lapor.contracts import AGENCY_OUT_OF_SCOPE
from lapor.directory import ESCALATION_LEVELS, AgencyDirectory, Contacts, load_directory
from lapor.regions import Region
from services.notify.labels import citizen_email_subject, format_date_id, format_datetime_id
from services.notify.templates import TemplateSet

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

    def contacts(self, region: str, code: str) -> Contacts:
        return self.directories[region].agency(code).contacts

    def category_label(self, region: str, code: str | None, category: str) -> str:
        directory = self.directories.get(region)
        if directory is None or code is None or code not in directory:
            return category
        try:
            return directory.agency(code).category(category).label
        except KeyError:
            return category

    def missing_agency(self, code: str) -> list[str]:
        """Regions whose directory lacks `code` (checked at start-up for the admin agency)."""
        return [rid for rid, directory in self.directories.items() if code not in directory]

    def webhook_agencies(self) -> set[str]:
        """Agencies with a webhook contact at any level, across regions."""
        return {
            agency.code
            for directory in self.directories.values()
            for agency in directory.agencies
            if any(c.webhook for level in ESCALATION_LEVELS for c in agency.contacts.at(level))
        }


@dataclass(frozen=True)
class RenderedNotice:
    subject: str
    body: str


class SmsRenderer:
    """Renders citizen SMS and official notices in the region's local time.

    Citizens are told calendar dates; officials get dates with the hour, since
    an urgent case runs on a 24-hour clock.
    """

    def __init__(self, templates: TemplateSet, regions: Mapping[str, Region]) -> None:
        self.templates = templates
        self.zones = {rid: _ZONE_ABBREVIATIONS.get(r.timezone, "WIB") for rid, r in regions.items()}

    def render_sms(self, template: str, values: Mapping[str, Any], region: str | None) -> str:
        return self.templates.render(template, **self._citizen_values(values, region))

    def render_email(
        self, template: str, values: Mapping[str, Any], region: str | None
    ) -> RenderedNotice:
        """A citizen message as an e-mail: the SMS text without its segment budget."""
        return RenderedNotice(
            subject=citizen_email_subject(template, values.get("tracking_id")),
            body=self.templates.render_plain(template, **self._citizen_values(values, region)),
        )

    def _citizen_values(self, values: Mapping[str, Any], region: str | None) -> dict[str, Any]:
        zone = self.zones.get(region or "", "WITA")
        return {
            key: format_date_id(value, zone) if isinstance(value, (date, datetime)) else value
            for key, value in values.items()
        }

    def render_official(
        self, template: str, values: Mapping[str, Any], region: str | None
    ) -> RenderedNotice:
        zone = self.zones.get(region or "", "WITA")
        shown = {key: _official_value(value, zone) for key, value in values.items()}
        return RenderedNotice(
            subject=self.templates.render_subject(template, **shown),
            body=self.templates.render(template, **shown),
        )


def _official_value(value: Any, zone: str) -> Any:
    if isinstance(value, datetime):
        return format_datetime_id(value, zone)
    if isinstance(value, date):
        return format_date_id(value)
    return value
