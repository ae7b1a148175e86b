"""Anonymous reads are bounded: the Open311 listing by a 90-day span, a page size and a
number of ids, read through the (region, received_at) index; the report by a default and
a longest period; and every client by a budget of anonymous reads (429 beyond it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Header, HTTPException, Request
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry

from lapor.directory import load_directory
from lapor.report import report_router
from lapor.report.period import MAX_DAYS, bounded_period
from lapor.runtime.http import create_http_app, mark_authenticated
from lapor.runtime.settings import HttpLimits, ServiceSettings, documentation_infra
from services.intake.georeport import MAX_IDS, requests_query
from services.intake.open311 import Open311Context, build_router
from tools.devstack import ROOT

DIRECTORY = load_directory(ROOT / "data" / "regions" / "banjar")
WITA = ZoneInfo("Asia/Makassar")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CLIENT = ("203.0.113.7", 40000)


class Store:
    """The repository's read side: records what the listing asked for."""

    def __init__(self) -> None:
        self.searches: list[tuple[dict[str, Any], int]] = []
        self.gets: list[str] = []

    async def get(self, tracking_id: str) -> dict[str, Any] | None:
        self.gets.append(tracking_id)
        return None

    async def search(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        self.searches.append((query, limit))
        return []


async def _no_submit(submission: Any) -> dict[str, Any]:
    raise AssertionError("nothing is submitted here")


def _no_db() -> Any:
    raise AssertionError("a refused period never reaches the database")


def _app(store: Store, limits: HttpLimits) -> FastAPI:
    open311 = build_router(
        Open311Context(
            repository=lambda: store,
            submit=_no_submit,
            directories={"banjar": DIRECTORY},
            zones={"banjar": WITA},
            default_region="banjar",
        )
    )
    status = APIRouter()

    @status.get("/api/v1/complaints/{tracking_id}")
    async def public_status(
        tracking_id: str, request: Request, authorization: str | None = Header(None)
    ) -> Any:
        if authorization is not None:
            if authorization != "Bearer good":
                raise HTTPException(401, "unknown token")
            mark_authenticated(request)
        return {"tracking_id": tracking_id}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    return create_http_app(
        service="test",
        broker=NatsBroker(),
        registry=CollectorRegistry(),
        ready_checks={},
        lifespan=lifespan,
        routers=[open311, status, report_router(_no_db, ROOT / "data")],
        limits=limits,
    )


def _client(app: FastAPI, client: tuple[str, int] = CLIENT) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://lapor.test")


UNLIMITED = HttpLimits(rate_per_minute=0, read_rate_per_minute=0)


def test_the_listing_query_is_by_region_and_a_received_at_range() -> None:
    query = requests_query({}, now=NOW, region="banjar")
    assert query == {
        "confidential": {"$ne": True},
        "region": "banjar",
        "received_at": {"$gte": NOW - timedelta(days=90), "$lte": NOW},
    }


async def test_the_listing_is_bounded_by_span_page_size_and_ids() -> None:
    store = Store()
    async with _client(_app(store, UNLIMITED)) as http:
        default = await http.get("/open311/v2/requests.json")
        page = await http.get("/open311/v2/requests.json", params={"page_size": 50})
        too_big = await http.get("/open311/v2/requests.xml", params={"page_size": 1001})
        zero = await http.get("/open311/v2/requests.json", params={"page_size": 0})
        span = await http.get(
            "/open311/v2/requests.json",
            params={"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-04-02T00:00:00Z"},
        )
        ids = ",".join(f"LPR-{i:04d}" for i in range(MAX_IDS + 1))
        many = await http.get("/open311/v2/requests.json", params={"service_request_id": ids})
        few = await http.get(
            "/open311/v2/requests.json", params={"service_request_id": "lpr-1,LPR-2"}
        )
    assert default.status_code == 200 and page.status_code == 200
    (query, limit), (_, paged) = store.searches
    assert query["region"] == "banjar" and set(query["received_at"]) == {"$gte", "$lte"}
    assert query["received_at"]["$lte"] - query["received_at"]["$gte"] == timedelta(days=90)
    assert (limit, paged) == (1000, 50)
    assert too_big.status_code == 400 and b"page_size" in too_big.content
    assert too_big.headers["content-type"].startswith("application/xml")
    assert zero.status_code == 400
    assert span.status_code == 400 and "90 days" in span.json()[0]["description"]
    assert many.status_code == 400 and many.json()[0]["code"] == 400
    # Listed ids are looked up one by one by _id (FerretDB pushes no $in down).
    assert few.status_code == 200 and store.gets == ["LPR-1", "LPR-2"]
    assert len(store.searches) == 2


def test_the_report_period_has_a_default_and_a_longest() -> None:
    today = date(2026, 6, 1)
    assert bounded_period(None, None, today) == (date(2026, 5, 3), today)
    assert bounded_period(None, date(2026, 3, 31), today) == (date(2026, 3, 2), date(2026, 3, 31))
    assert bounded_period(date(2026, 1, 1), None, today) == (date(2026, 1, 1), today)
    year = (date(2025, 6, 1), date(2025, 6, 1) + timedelta(days=MAX_DAYS - 1))
    assert bounded_period(*year, today) == year
    with pytest.raises(ValueError, match="at most 366 days"):
        bounded_period(year[0], year[1] + timedelta(days=1), today)
    with pytest.raises(ValueError, match="at most 366 days"):
        bounded_period(date(2020, 1, 1), None, today)
    with pytest.raises(ValueError):
        bounded_period(date(2026, 3, 31), date(2026, 3, 1), today)


async def test_a_report_over_the_longest_period_is_refused() -> None:
    async with _client(_app(Store(), UNLIMITED)) as http:
        for path in ("/api/v1/reports/agencies", "/reports/agencies.html"):
            answer = await http.get(path, params={"from": "2024-01-01", "to": "2026-01-01"})
            assert answer.status_code == 422
            assert "at most 366 days" in answer.json()["detail"]


READS = HttpLimits(rate_per_minute=0, read_rate_per_minute=6, read_rate_burst=3)


@pytest.mark.parametrize(
    "path", ["/open311/v2/requests.json", "/api/v1/complaints/LPR-1", "/reports/agencies.html"]
)
async def test_anonymous_reads_over_their_budget_get_429(path: str) -> None:
    params = {"from": "2020-01-01"} if "reports" in path else {}  # refused before the database
    app = _app(Store(), READS)
    async with _client(app) as http, _client(app, ("198.51.100.1", 1)) as other:
        passed = [(await http.get(path, params=params)).status_code for _ in range(3)]
        refused = await http.get(path, params=params)
        health = [(await http.get("/healthz")).status_code for _ in range(5)]
        neighbour = await other.get(path, params=params)
    assert 429 not in passed
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 10
    assert health == [200] * 5
    assert neighbour.status_code != 429


async def test_a_client_with_a_valid_token_is_not_limited_by_the_anonymous_budget() -> None:
    app = _app(Store(), READS)
    path = "/api/v1/complaints/LPR-1"
    good = {"authorization": "Bearer good"}
    async with _client(app) as http:
        first = await http.get(path, headers=good)
        anonymous = [(await http.get(path)).status_code for _ in range(4)]
        signed = [(await http.get(path, headers=good)).status_code for _ in range(10)]
    assert first.status_code == 200
    # The valid token's read was given back: the client still had its three.
    assert anonymous == [200, 200, 200, 429]
    assert signed == [200] * 10


async def test_a_refused_token_counts_against_the_anonymous_budget() -> None:
    app = _app(Store(), READS)
    path = "/api/v1/complaints/LPR-1"
    async with _client(app) as http:
        bad = [
            (await http.get(path, headers={"authorization": "Bearer made-up"})).status_code
            for _ in range(3)
        ]
        after = await http.get(path)
    assert bad == [401] * 3
    assert after.status_code == 429


@pytest.mark.security
@pytest.mark.parametrize("path", ["/open311/v2/requests.json", "/reports/agencies.html"])
async def test_a_made_up_token_on_a_public_read_counts_against_the_anonymous_budget(
    path: str,
) -> None:
    """The listing and the report check no token: any Authorization header would
    otherwise buy unlimited reads."""
    params = {"from": "2020-01-01"} if "reports" in path else {}
    app = _app(Store(), READS)
    async with _client(app) as http:
        statuses = [
            (await http.get(path, params=params, headers={"authorization": "Bearer x"})).status_code
            for _ in range(4)
        ]
    assert 429 not in statuses[:3]
    assert statuses[3] == 429


def test_the_anonymous_read_budget_is_a_setting() -> None:
    settings = ServiceSettings(
        infra=documentation_infra(), http_read_rate_per_minute=0, http_read_rate_burst=7
    )
    limits = settings.http_limits()
    assert (limits.read_rate_per_minute, limits.read_rate_burst) == (0, 7)
