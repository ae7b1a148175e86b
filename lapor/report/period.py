"""Report periods and display names, shared by the command line and the HTTP API."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lapor.report.build import Labels

DEFAULT_TIMEZONE = "Asia/Makassar"


def region_timezone(data_dir: Path | None, region: str | None) -> ZoneInfo:
    if data_dir is not None and region:
        from lapor.regions import load_regions

        try:
            regions = load_regions(data_dir)
        except ValueError:
            regions = {}
        if region in regions:
            return ZoneInfo(regions[region].timezone)
    return ZoneInfo(DEFAULT_TIMEZONE)


def period_bounds(
    start: date | None, end: date | None, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """Whole local days: `start` from its midnight, `end` up to and including that day."""
    try:
        lower = datetime.combine(start, time.min, zone) if start else None
        upper = datetime.combine(end + timedelta(days=1), time.min, zone) if end else None
        # Stored times are UTC: a bound must exist there too (0001-01-01 at +08:00 does not).
        for bound in (lower, upper):
            if bound is not None:
                bound.astimezone(UTC)
    except OverflowError:
        raise ValueError("the period lies outside the calendar's range") from None
    if lower and upper and upper <= lower:
        raise ValueError("the period ends before it starts")
    return lower, upper


# What the report over HTTP covers without a period, and the longest it covers:
# every period is a range of received_at in one region, read through the
# (region, received_at) index, so its length bounds the work of one request.
DEFAULT_DAYS = 30
MAX_DAYS = 366


def bounded_period(
    start: date | None, end: date | None, today: date, max_days: int = MAX_DAYS
) -> tuple[date, date]:
    """The days (first, last, inclusive) a report over HTTP covers.

    Without dates the last `DEFAULT_DAYS` days up to today; only `end`, the
    `DEFAULT_DAYS` days up to it; only `start`, from it up to today. ValueError for
    a period longer than `max_days` days or one that ends before it starts.
    """
    try:
        if start is None and end is None:
            end = today
        if start is None:
            assert end is not None
            start = end - timedelta(days=DEFAULT_DAYS - 1)
        if end is None:
            end = max(start, today)
    except OverflowError:
        raise ValueError("the period lies outside the calendar's range") from None
    if end < start:
        raise ValueError("the period ends before it starts")
    if (end - start).days + 1 > max_days:
        raise ValueError(f"a report covers at most {max_days} days")
    return start, end


@functools.lru_cache(maxsize=16)
def load_labels(data_dir: Path | None, region: str | None) -> Labels:
    """Agency names and category labels from the region's directory, and the
    region's name and time zone from its description, as far as they exist."""
    zone = region_timezone(data_dir, region).key
    if data_dir is None or not region:
        return Labels(timezone=zone)
    from lapor.directory import DirectoryError, load_directory
    from lapor.regions import load_regions

    try:
        described = load_regions(data_dir).get(region)
    except (ValueError, OSError):
        described = None
    name = described.name if described is not None else None
    region_dir = data_dir / "regions" / region
    if not region_dir.is_dir():
        return Labels(region=name, timezone=zone)
    try:
        directory = load_directory(region_dir)
    except (DirectoryError, OSError):
        return Labels(region=name, timezone=zone)
    agencies = {code: directory.name_of(code) for code in directory.codes}
    categories: dict[str, str] = {}
    for code in directory.codes:
        for category in directory.agency(code).categories:
            categories.setdefault(category.id, category.label)
    return Labels(agencies=agencies, categories=categories, region=name, timezone=zone)
