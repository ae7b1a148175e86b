"""GET /api/v1/breaches on the real FerretDB: the accountability record as MongoSlaStore
keeps and queries it (breaches, breach_counts) answers exactly as the in-memory store
the unit tests use, and as an operator would read it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from lapor.contracts import Priority, State
from lapor.tokens import in_memory_tokens
from services.sla.api import breaches_router
from services.sla.repository import MongoSlaStore
from tests.unit.sla.fakes import routed, state
from tests.unit.sla.test_engine import Harness, wita
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

DB_NAME = "lapor_sla_breaches_api"
STEP = timedelta(hours=6)


async def play(sla: Harness) -> Harness:
    """PUPR ignores C1 (first response and answer breached, escalated up the chain); DLH
    acknowledges C2 a day late; C3 waits in triage past Diskominfo's routing deadline
    until an admin decides; PUPR's C4 breaches in December; RSUD answers C5 in time."""
    await sla.send(
        routed("C1", wita(11, 2, 9)),
        routed("C2", wita(11, 2, 9), agency="DLH"),
        routed("C3", wita(11, 2, 9), triage=True),
        routed("C5", wita(11, 2, 9), agency="RSUD", priority=Priority.URGENT),
    )
    await sla.send(state("C5", "ack", State.IN_PROGRESS, wita(11, 2, 12), State.ASSIGNED))
    await sla.send(state("C5", "answer", State.RESPONDED, wita(11, 3, 12), State.IN_PROGRESS))
    await sla.run_until(wita(11, 6, 12), step=STEP)
    await sla.send(
        routed("C3", wita(11, 6, 12), round_=1, agency="DINKES", received_at=wita(11, 2, 9))
    )
    await sla.run_until(wita(11, 11, 12), step=STEP)
    await sla.send(state("C2", "ack", State.IN_PROGRESS, wita(11, 10, 23, 59, 59), State.ASSIGNED))
    await sla.send(routed("C4", wita(11, 30, 9)))
    await sla.run_until(wita(12, 20), step=STEP)
    return sla


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worlds(own_servers: Stack, own_mongo: Any) -> tuple[Harness, Harness]:
    db = own_mongo[DB_NAME]
    store = MongoSlaStore(db)
    await store.ensure_indexes()
    on_ferretdb = await play(Harness(wita(11, 2, 9), store=store))  # type: ignore[arg-type]
    in_memory = await play(Harness(wita(11, 2, 9)))
    return on_ferretdb, in_memory


def client(sla: Harness) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(
        breaches_router(lambda: sla.deps, in_memory_tokens({"t": {"role": "admin"}}))
    )
    transport = httpx.ASGITransport(app=app)
    bearer = {"Authorization": "Bearer t"}
    return httpx.AsyncClient(transport=transport, base_url="http://sla", headers=bearer)


async def get(sla: Harness, params: dict[str, Any]) -> httpx.Response:
    async with client(sla) as http:
        return await http.get("/api/v1/breaches", params=params)


QUERIES: list[dict[str, Any]] = [
    {},
    {"agency": "PUPR", "from": "2026-11-01", "to": "2026-12-01"},
    {"agency": "PUPR", "from": "2026-12-01"},
    {"agency": "DLH"},
    {"agency": "DISKOMINFO", "clock": "routing"},
    {"clock": "answer"},
    {"to": "2026-11-10T00:00:00+08:00"},
    {"from": "2026-11-09T15:59:59Z", "to": "2026-11-10"},
    {"region": "banjar", "limit": 2},
    {"agency": "RSUD"},
    {"agency": "NOBODY"},
]


@pytest.mark.parametrize(
    "params", QUERIES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items())
)
async def test_ferretdb_answers_like_the_in_memory_store(
    worlds: tuple[Harness, Harness], params: dict[str, Any]
) -> None:
    on_ferretdb, in_memory = worlds
    real, fake = await get(on_ferretdb, params), await get(in_memory, params)
    assert real.status_code == fake.status_code == 200
    assert real.json() == fake.json()


async def test_an_agencys_month_on_ferretdb(worlds: tuple[Harness, Harness]) -> None:
    on_ferretdb, _ = worlds
    response = await get(on_ferretdb, {"agency": "PUPR", "from": "2026-11-01", "to": "2026-12-01"})
    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {"routing": 0, "first_response": 1, "answer": 1}
    assert body["total"] == 2 == body["returned"]
    first, answer = body["breaches"]
    assert (first["complaint_id"], first["clock"]) == ("C1", "first_response")
    assert first["due_at"] == "2026-11-09T23:59:59+08:00"
    assert first["breached_at"] == "2026-11-10T03:00:00+08:00"  # the first sweep after it
    assert first["level"] == "ombudsman" and first["open"] is True
    assert list(first["escalations"]) == ["liaison", "head", "sekda", "ombudsman"]
    assert all(at.endswith("+08:00") for at in first["escalations"].values())
    # Still open at the last sweep (20 Dec 03:00): late by 40 days, 3 h and 1 s, counted live.
    assert on_ferretdb.clock.now == wita(12, 20, 3)
    assert first["late_by_s"] == 40 * 86_400 + 3 * 3600 + 1 and first["late_by"] == "P40DT3H1S"
    assert (answer["clock"], answer["due_at"]) == ("answer", "2026-11-16T23:59:59+08:00")

    # DLH's late acknowledgement: closed, and how late it really was.
    late = (await get(on_ferretdb, {"agency": "DLH", "clock": "first_response"})).json()
    [dlh] = late["breaches"]
    assert dlh["open"] is False and dlh["resolved_at"] == "2026-11-10T23:59:59+08:00"
    assert dlh["late_by_s"] == 86_400 and dlh["late_by"] == "P1D"
    # Triage held Diskominfo to the routing clock until the admin decided.
    routing = (await get(on_ferretdb, {"agency": "DISKOMINFO"})).json()
    assert routing["counts"]["routing"] == 1
    [triage] = routing["breaches"]
    assert triage["complaint_id"] == "C3" and triage["resolved_at"] == "2026-11-06T12:00:00+08:00"
    # RSUD answered in time: nothing on its record.
    assert (await get(on_ferretdb, {"agency": "RSUD"})).json()["total"] == 0


async def test_counts_cover_the_period_while_the_list_is_limited(
    worlds: tuple[Harness, Harness],
) -> None:
    on_ferretdb, _ = worlds
    everything = (await get(on_ferretdb, {})).json()
    limited = (await get(on_ferretdb, {"limit": 1})).json()
    assert limited["returned"] == 1 and limited["total"] == everything["total"]
    assert limited["breaches"][0] == everything["breaches"][0]
    due = [b["due_at"] for b in everything["breaches"]]
    assert due == sorted(due)  # in deadline order, as the index serves them
    assert everything["total"] == sum(everything["counts"].values()) == len(due)


async def test_refusals_on_ferretdb(worlds: tuple[Harness, Harness]) -> None:
    on_ferretdb, _ = worlds
    assert (await get(on_ferretdb, {"region": "atlantis"})).status_code == 404
    for params in (
        {"from": "2026-12-01", "to": "2026-11-01"},
        {"from": "kemarin"},
        {"clock": "lunch"},
        {"limit": 0},
    ):
        assert (await get(on_ferretdb, params)).status_code == 422, params
