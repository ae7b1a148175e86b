"""The report over HTTP: JSON for programs, the HTML page for people."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse
from pymongo.asynchronous.database import AsyncDatabase

from lapor.report.build import MIN_VOLUME, build_report
from lapor.report.fetch import fetch_report_data
from lapor.report.html import render_html
from lapor.report.period import (
    DEFAULT_DAYS,
    MAX_DAYS,
    bounded_period,
    load_labels,
    period_bounds,
    region_timezone,
)
from lapor.runtime.http import IsoDate, refusals

GetDb = Callable[[], AsyncDatabase[dict[str, Any]]]
Region = Annotated[str, Query(description="Region id", pattern=r"^[a-z][a-z0-9_]{0,47}$")]
From = Annotated[
    IsoDate | None,
    Query(
        alias="from",
        description=f"First day (local), inclusive; without it {DEFAULT_DAYS} days up to `to`",
    ),
]
To = Annotated[
    IsoDate | None,
    Query(
        alias="to",
        description=f"Last day (local), inclusive (default today); at most {MAX_DAYS} days",
    ),
]
MinVolume = Annotated[
    int, Query(ge=1, le=1000, description="Complaints due before an agency is ranked")
]


def report_router(
    get_db: GetDb, data_dir: Path | None = None, default_region: str = "banjar"
) -> APIRouter:
    router = APIRouter(tags=["reports"])

    async def report(
        region: str, start: date | None, end: date | None, min_volume: int
    ) -> dict[str, Any]:
        zone = region_timezone(data_dir, region)
        try:
            # Always a bounded period of one region: the (region, received_at) index.
            first, last = bounded_period(start, end, datetime.now(UTC).astimezone(zone).date())
            lower, upper = period_bounds(first, last, zone)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        data = await fetch_report_data(get_db(), region=region, start=lower, end=upper)
        return build_report(data, labels=load_labels(data_dir, region), min_volume=min_volume)

    @router.get(
        "/api/v1/reports/agencies",
        summary="Agency performance report (JSON)",
        responses=refusals(_422="Invalid parameters or period"),
        description=(
            "Per agency and per service category: complaints received, time to first "
            "response and to answer (median, 90th percentile), share answered within the "
            "deadline, breaches, rating, reopen rate; a ranking by the Wilson lower bound "
            "and the weak services. Confidential complaints are counted only."
        ),
    )
    async def agencies_json(
        region: Region = default_region,
        start: From = None,
        end: To = None,
        min_volume: MinVolume = MIN_VOLUME,
    ) -> dict[str, Any]:
        return await report(region, start, end, min_volume)

    @router.get(
        "/reports/agencies.html",
        response_class=HTMLResponse,
        summary="Agency performance report (HTML page with charts)",
        responses=refusals(html=True, _422="Invalid parameters or period"),
    )
    async def agencies_html(
        region: Region = default_region,
        start: From = None,
        end: To = None,
        min_volume: MinVolume = MIN_VOLUME,
    ) -> HTMLResponse:
        return HTMLResponse(render_html(await report(region, start, end, min_volume)))

    return router
