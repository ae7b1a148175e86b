"""Console bootstrap: the web application officers and admins work in, and the public
submission and tracking pages.

It holds no database connection and no bus login: its lifespan owns one HTTP
client to intake, SLA and notify, and every call carries the officer's session
token (or none, on the public pages).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from lapor.calendar import CalendarError, WorkingCalendar, load_calendar
from lapor.directory import DirectoryError, load_directory
from lapor.regions import load_regions
from lapor.runtime.http import BodyLimit
from lapor.runtime.logs import configure_logging
from lapor.runtime.service import Late
from services.console.client import (
    HttpServices,
    ServiceError,
    Services,
    Unauthorized,
    Unavailable,
    backend_time,
    browser_address,
)
from services.console.metrics import ConsoleMetrics
from services.console.pages import console_router
from services.console.security import Keys
from services.console.settings import ConsoleSettings
from services.console.web import (
    Console,
    CsrfRefused,
    LoginRequired,
    PasswordChangeRequired,
    UnknownAction,
    see_other,
)

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
DESCRIPTION = "The console: agency officers' and admins' web application, public pages."

# No inline script anywhere, no framing, no third-party origin; forms post here only.
CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# intake's performance report is one page with its own <style> block and no script.
REPORT_CSP = CSP.replace("default-src 'self'", "default-src 'self'; style-src 'unsafe-inline'")
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _calendar(region_dir: Path, zone: ZoneInfo) -> WorkingCalendar:
    """The region's working calendar, loaded as SLA loads it (national holidays, the
    days off and make-up working days of data/regions/<region>/days_off.yaml), so
    the working days left that an officer reads are the ones SLA counts."""
    try:
        return load_calendar(region_dir)
    except (CalendarError, OSError) as exc:
        # SLA refuses to start on such files; the console still shows its pages.
        log.warning("region calendar unreadable (%s): national holidays only", exc)
        return WorkingCalendar(zone.key)


def _zone(settings: ConsoleSettings) -> ZoneInfo:
    try:
        region = load_regions(settings.data_dir).get(settings.default_region)
    except (OSError, ValueError):
        region = None
    return ZoneInfo(getattr(region, "timezone", None) or "Asia/Makassar")


def _agencies(settings: ConsoleSettings) -> dict[str, str]:
    try:
        directory = load_directory(settings.region_dir())
    except (DirectoryError, OSError):
        return {}
    return {code: directory.name_of(code) for code in directory.codes}


def create_app(
    settings: ConsoleSettings | None = None,
    services: Services | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """`services` replaces the HTTP clients (unit tests pass `InMemoryServices`)."""
    settings = settings or ConsoleSettings()  # type: ignore[call-arg]
    configure_logging("console", settings.log_level, settings.log_format)
    registry = registry or CollectorRegistry()
    metrics = ConsoleMetrics(registry)
    live: Late[Services] = Late("console services")
    if services is not None:
        live.set(services)
    lifespan = _lifespan(settings, metrics, live, owned=services is None)
    zone = _zone(settings)
    app = FastAPI(title="Lapor console", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=settings.http_max_body_bytes)
    console = Console(
        services=live.get,
        keys=Keys(settings.cookie_key.get_secret_value()),
        templates=Jinja2Templates(directory=HERE / "templates"),
        secure_cookies=settings.cookies_secure,
        zone=zone,
        agencies=_agencies(settings),
        calendar=_calendar(settings.region_dir(), zone),
        clock=clock,
    )
    _add_headers_and_metrics(app, metrics)
    _add_session_handlers(app, console, metrics)
    _add_service_handlers(app, console)
    _add_probes(app, live, registry)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(console_router(console))
    return app


def _lifespan(
    settings: ConsoleSettings, metrics: ConsoleMetrics, live: Late[Services], *, owned: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The HTTP client to the services, unless given ones (`owned` false) are used."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not owned:
            yield
            return
        async with httpx.AsyncClient(timeout=settings.backend_timeout_s) as client:
            live.set(
                HttpServices(
                    client,
                    str(settings.intake_url),
                    str(settings.sla_url),
                    str(settings.notify_url),
                    metrics,
                    dlq_url=str(settings.dlq_url),
                    hotspots_url=str(settings.hotspots_url),
                )
            )
            log.info("console started")
            try:
                yield
            finally:
                live.set(None)
                log.info("console stopped")

    return lifespan


def _add_headers_and_metrics(app: FastAPI, metrics: ConsoleMetrics) -> None:
    @app.middleware("http")
    async def headers_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        waited: list[float] = []
        backend_time.set(waited)
        browser_address.set(request.client.host if request.client else None)
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        metrics.pages.labels(template, request.method, str(response.status_code)).inc()
        metrics.page_seconds.labels(template).observe(time.perf_counter() - started)
        report = response.headers.get("X-Report-Page") is not None
        response.headers["Content-Security-Policy"] = REPORT_CSP if report else CSP
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        total_ms = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = (
            f"app;dur={total_ms:.1f}, services;dur={sum(waited) * 1000:.1f}"
        )
        return response


def _add_session_handlers(app: FastAPI, console: Console, metrics: ConsoleMetrics) -> None:
    """No session, a session intake no longer accepts, a password to change, a bad form."""

    @app.exception_handler(LoginRequired)
    async def login_required(_request: Request, exc: LoginRequired) -> Response:
        return see_other("/masuk?lanjut=" + quote(exc.next_path, safe=""))

    @app.exception_handler(Unauthorized)
    async def session_gone(request: Request, _exc: Unauthorized) -> Response:
        # intake no longer accepts the token (expired, revoked, account disabled).
        metrics.refusals.labels("session").inc()
        path = request.url.path if request.method == "GET" else "/"
        response = see_other("/masuk?lanjut=" + quote(path, safe=""))
        console.clear_session(response)
        return response

    @app.exception_handler(PasswordChangeRequired)
    async def password_first(_request: Request, _exc: PasswordChangeRequired) -> Response:
        return see_other("/akun/sandi")

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _exc: CsrfRefused) -> Response:
        metrics.refusals.labels("csrf").inc()
        log.warning("form refused: missing or wrong CSRF token on %s", request.url.path)
        return _error_page(
            console,
            request,
            403,
            "Formulir ini kedaluwarsa atau tidak berasal dari konsol. "
            "Muat ulang halaman lalu kirim lagi.",
        )


def _error_page(console: Console, request: Request, status: int, message: str) -> Response:
    return console.render(
        request, "error.html", console.session(request), status=status, error=message
    )


def _add_service_handlers(app: FastAPI, console: Console) -> None:
    """A service out of reach, or refusing, or an action the console does not offer:
    the page says so."""

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> Response:
        message = "Layanan sedang tidak dapat dihubungi. Coba lagi sebentar lagi."
        return _error_page(console, request, 503, message)

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> Response:
        return _error_page(console, request, exc.status, exc.message)

    @app.exception_handler(UnknownAction)
    async def unknown_action(request: Request, _exc: UnknownAction) -> Response:
        return _error_page(console, request, 404, "Tindakan tidak dikenal.")


def _add_probes(app: FastAPI, live: Late[Services], registry: CollectorRegistry) -> None:
    """Health, readiness and metrics, outside every schema."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, Any]:
        intake = await live.get().ready()
        response.status_code = 200 if intake else 503
        return {"ready": intake, "checks": {"intake": intake}}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)


def main() -> None:
    settings = ConsoleSettings()  # type: ignore[call-arg]
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
