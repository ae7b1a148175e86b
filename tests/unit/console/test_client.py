"""The HTTP client of the console: the officer's token, the browser's address, refusals."""

from __future__ import annotations

import httpx
import pytest

from services.console.client import (
    HttpServices,
    ServiceError,
    Unauthorized,
    WorklistQuery,
    browser_address,
)

SEEN: list[httpx.Request] = []


def answer(request: httpx.Request) -> httpx.Response:
    SEEN.append(request)
    if (
        request.url.path == "/api/v1/agencies/PUPR/complaints"
        and request.url.params.get("q") == "x"
    ):
        return httpx.Response(200, json=[], headers={"X-Total-Count-More-Than": "100"})
    if request.url.path == "/api/v1/agencies/PUPR/complaints":
        return httpx.Response(200, json=[{"tracking_id": "LPR-1"}], headers={"X-Total-Count": "41"})
    if request.url.path.endswith("/acknowledge"):
        return httpx.Response(409, json={"detail": "cannot acknowledge a complaint that is closed"})
    if request.url.path == "/api/v1/complaints":
        return httpx.Response(422, json={"detail": {"reason": "empty", "message": "no text"}})
    return httpx.Response(401, json={"detail": "unknown token"})


@pytest.fixture
def services() -> HttpServices:
    SEEN.clear()
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return HttpServices(client, "http://intake", "http://sla", "http://notify")


async def test_the_officers_token_and_the_browsers_address_go_along(
    services: HttpServices,
) -> None:
    browser_address.set("203.0.113.7")
    listing = await services.worklist(
        "lpt_x", "PUPR", WorklistQuery(states=["assigned"], q="jalan", limit=5)
    )
    assert listing.total == 41 and listing.items == [{"tracking_id": "LPR-1"}]
    sent = SEEN[-1]
    assert sent.headers["authorization"] == "Bearer lpt_x"
    assert sent.headers["x-forwarded-for"] == "203.0.113.7"
    assert sent.url.params.get_list("status") == ["assigned"]
    assert sent.url.params["q"] == "jalan" and sent.url.params["limit"] == "5"


async def test_a_count_that_stopped_is_a_lower_bound(services: HttpServices) -> None:
    listing = await services.worklist("lpt_x", "PUPR", WorklistQuery(q="x"))
    assert listing.total == 100 and listing.more_than


async def test_refusals_keep_the_services_words(services: HttpServices) -> None:
    with pytest.raises(ServiceError) as refused:
        await services.act("lpt_x", "LPR-1", "acknowledge", {})
    assert refused.value.status == 409 and "closed" in refused.value.message
    with pytest.raises(ServiceError) as rejected:
        await services.submit({"text": ""})
    assert rejected.value.status == 422 and rejected.value.message == "no text"
    with pytest.raises(Unauthorized):
        await services.triage("lpt_gone")
