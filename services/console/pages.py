"""The console's pages, screen by screen: each route reads a form or a query, makes
one or a few calls to the services with the officer's session token, and renders
the answer.

Nothing here decides what an officer may see or do: intake, SLA and notify do,
and their refusals (403, 409, 422) are shown on the page in their own words.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.console.admin_pages import admin_routes
from services.console.complaint_pages import complaint_routes
from services.console.hotspot_pages import hotspot_routes
from services.console.oversight_pages import oversight_routes
from services.console.public_pages import public_routes
from services.console.session_pages import session_routes
from services.console.web import Console


def console_router(console: Console) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # Registration order is the routes' order: keep it.
    for routes in (
        session_routes,
        complaint_routes,
        oversight_routes,
        admin_routes,
        public_routes,
        hotspot_routes,
    ):
        routes(router, console)
    return router
