"""What every service's HTTP app refuses: oversized bodies (413), clients over their
budget of mutating requests (429) and, for a bug, a bare JSON 500 with the
traceback only in the server's log."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from lapor.runtime.http import TokenBuckets, client_key, create_http_app
from lapor.runtime.settings import HttpLimits, ServiceSettings, documentation_infra

CLIENT = ("203.0.113.7", 40000)


class Note(BaseModel):
    text: str


def _app(limits: HttpLimits) -> tuple[FastAPI, list[str]]:
    reached: list[str] = []
    router = APIRouter()

    @router.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        reached.append("raw")
        return {"bytes": len(await request.body())}

    @router.post("/note")
    async def note(body: Note) -> dict[str, int]:
        reached.append("note")
        return {"chars": len(body.text)}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail for +6281234567890")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = create_http_app(
        service="test",
        broker=NatsBroker(),
        registry=CollectorRegistry(),
        ready_checks={},
        lifespan=lifespan,
        routers=[router],
        limits=limits,
    )
    return app, reached


def _client(app: FastAPI, client: tuple[str, int] = CLIENT) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://lapor.test")


async def _chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b"a" * min(size, total - start)


NO_RATE = HttpLimits(max_body_bytes=2048, rate_per_minute=0)


async def test_a_declared_oversized_body_is_refused_before_the_route_runs() -> None:
    app, reached = _app(NO_RATE)
    async with _client(app) as client:
        answer = await client.post("/raw", content=b"a" * 2049)
        fits = await client.post("/raw", content=b"a" * 2048)
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/json"
    assert "2048" in answer.json()["detail"]
    assert fits.status_code == 200 and fits.json() == {"bytes": 2048}
    assert reached == ["raw"]


@pytest.mark.parametrize("path", ["/raw", "/note"])
async def test_a_chunked_body_without_length_is_cut_off_at_the_limit(path: str) -> None:
    app, _ = _app(NO_RATE)
    async with _client(app) as client:
        answer = await client.post(
            path, content=_chunks(10_000), headers={"content-type": "application/json"}
        )
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["detail"].startswith("request body larger than")


async def test_a_client_over_its_budget_gets_429_with_retry_after() -> None:
    app, _ = _app(HttpLimits(rate_per_minute=6, rate_burst=3))
    async with _client(app) as client, _client(app, ("198.51.100.1", 1)) as other:
        passed = [(await client.post("/note", json={"text": "x"})).status_code for _ in range(3)]
        refused = await client.post("/note", json={"text": "x"})
        reads = [(await client.get("/healthz")).status_code for _ in range(5)]
        neighbour = await other.post("/note", json={"text": "x"})
    assert passed == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json() == {"detail": "too many requests"}
    # Six a minute: the next token comes within ten seconds.
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    assert reads == [200] * 5
    assert neighbour.status_code == 200


async def test_the_rate_limit_can_be_switched_off_and_spares_clients_without_address() -> None:
    for limits, client in (
        (HttpLimits(rate_per_minute=0, rate_burst=1), CLIENT),
        # An in-process ASGI caller (the API fuzzer, other tests) has no IP address.
        (HttpLimits(rate_per_minute=1, rate_burst=1), ("testclient", 50000)),
    ):
        app, _ = _app(limits)
        async with _client(app, client) as http:
            codes = {(await http.post("/note", json={"text": "x"})).status_code for _ in range(5)}
        assert codes == {200}


def test_buckets_refill_with_time_and_forget_idle_clients() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=2, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    now[0] += 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    buckets.MAX_KEYS = 3
    for key in ("b", "c"):
        buckets.take(key)
    now[0] += 10
    buckets.take("d")
    assert set(buckets._buckets) == {"d"}


def test_clients_are_keyed_by_address_and_ipv6_by_its_64() -> None:
    def key(host: str) -> str | None:
        return client_key({"client": (host, 1)})

    assert key("203.0.113.7") == "203.0.113.7"
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert key("::ffff:203.0.113.7") == "203.0.113.7"
    assert key("testclient") is None
    assert client_key({"client": None}) is None


async def test_a_bug_answers_a_bare_json_500_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = _app(NO_RATE)
    with caplog.at_level(logging.ERROR, logger="lapor.runtime.http"):
        async with _client(app) as client:
            answer = await client.get("/boom", params={"key": "secret-link-key"})
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error"}
    assert "secret" not in answer.text and "Traceback" not in answer.text
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "/boom" in record.getMessage()
    assert "secret-link-key" not in record.getMessage()


def test_limits_are_service_settings() -> None:
    settings = ServiceSettings(
        infra=documentation_infra(),
        http_max_body_bytes=4096,
        http_rate_per_minute=0,
        http_rate_burst=5,
    )
    assert settings.http_limits() == HttpLimits(
        max_body_bytes=4096, rate_per_minute=0, rate_burst=5
    )
    assert ServiceSettings(infra=documentation_infra()).http_limits() == HttpLimits()
    with pytest.raises(ValidationError):
        ServiceSettings(infra=documentation_infra(), http_max_body_bytes=10)
    with pytest.raises(ValidationError):
        ServiceSettings(infra=documentation_infra(), http_rate_per_minute=-1)


def test_documentation_settings_carry_the_defaults() -> None:
    settings: Any = ServiceSettings.model_construct(infra=documentation_infra())
    assert settings.http_limits() == HttpLimits(max_body_bytes=64 * 1024)
