"""Oversight: breaches, the triage queue, the admins' overview, the monthly
accountability table and intake's performance report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.console import domain
from services.console.client import ServiceError
from services.console.complaint_pages import triage_page
from services.console.security import Session
from services.console.web import Console, agency_in_view


def oversight_routes(router: APIRouter, console: Console) -> None:
    # Registration order is the routes' order: keep it.
    _oversight_routes(router, console)
    _report_routes(router, console)


def _breaches_by_agency(breach_report: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """All and still-open breaches per agency ("-" for none)."""
    breaches_by_agency: dict[str, dict[str, int]] = {}
    for breach in breach_report.get("breaches", []):
        counts = breaches_by_agency.setdefault(breach.get("agency") or "-", {"all": 0, "open": 0})
        counts["all"] += 1
        counts["open"] += 1 if breach.get("open") else 0
    return breaches_by_agency


async def _overview_page(console: Console, request: Request, session: Session) -> Response:
    summary = await console.services().overview(session.token)
    breach_report = await console.services().breaches(session.token)
    rows = summary.get("agencies", []) if isinstance(summary, dict) else summary
    return console.render(
        request,
        "overview.html",
        session,
        rows=rows,
        summary=summary if isinstance(summary, dict) else {},
        breaches=_breaches_by_agency(breach_report),
        breach_total=breach_report.get("total", 0),
    )


async def _accountability_page(console: Console, request: Request, session: Session) -> Response:
    month = domain.month_or_current(
        request.query_params.get("month"), console.clock().astimezone(console.zone).date()
    )
    report = await console.services().accountability(session.token, month)
    rows = report.get("agencies", []) if isinstance(report, dict) else report
    return console.render(
        request, "accountability.html", session, month=month, rows=rows, report=report
    )


def _oversight_routes(router: APIRouter, console: Console) -> None:
    @router.get("/pelanggaran")
    async def breaches(request: Request) -> Response:
        session = console.require(request)
        agency = agency_in_view(session, request.query_params)
        report = await console.services().breaches(session.token, agency)
        return console.render(request, "breaches.html", session, report=report, agency=agency)

    @router.get("/triase")
    async def triage(request: Request) -> Response:
        return await console.page(request, lambda s: triage_page(console, request, s))

    @router.get("/ikhtisar")
    async def overview(request: Request) -> Response:
        return await console.page(request, lambda s: _overview_page(console, request, s))


def _report_routes(router: APIRouter, console: Console) -> None:
    @router.get("/akuntabilitas")
    async def accountability(request: Request) -> Response:
        return await console.page(request, lambda s: _accountability_page(console, request, s))

    @router.get("/laporan")
    async def agency_report(request: Request) -> Response:
        console.require(request)
        params = {k: v for k, v in request.query_params.items() if k in ("start", "end", "region")}
        try:
            html = await console.services().report_html(params)
        except ServiceError as refused:
            return HTMLResponse(refused.message, status_code=refused.status)
        # intake's report is one self-contained page with its own <style>, no script.
        return HTMLResponse(html, headers={"X-Report-Page": "1"})
