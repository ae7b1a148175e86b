"""GET /api/v1/breaches: the accountability record per agency and period."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from lapor.contracts import State
from lapor.tokens import in_memory_tokens
from services.sla.api import breaches_router, iso_duration
from tests.unit.sla.fakes import routed, state
from tests.unit.sla.test_engine import Harness, wita


@pytest.fixture
async def world() -> Harness:
    sla = Harness(wita(11, 2, 9))
    # PUPR ignores C1 (first response and answer breached, escalated); DLH
    # acknowledges C2 a day late; PUPR's C3 breaches in December.
    await sla.send(routed("C1", wita(11, 2, 9)), routed("C2", wita(11, 2, 9), agency="DLH"))
    await sla.run_until(wita(11, 11, 12), step=timedelta(hours=1))
    await sla.send(state("C2", "ack", State.IN_PROGRESS, wita(11, 10, 23, 59, 59), State.ASSIGNED))
    await sla.send(routed("C3", wita(11, 30, 9)))
    await sla.run_until(wita(12, 20), step=timedelta(hours=1))
    return sla


def client(sla: Harness) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(
        breaches_router(lambda: sla.deps, in_memory_tokens({"t": {"role": "admin"}}))
    )
    transport = httpx.ASGITransport(app=app)
    bearer = {"Authorization": "Bearer t"}
    return httpx.AsyncClient(transport=transport, base_url="http://sla", headers=bearer)


async def test_breaches_of_one_agency_in_one_month(world: Harness) -> None:
    async with client(world) as http:
        response = await http.get(
            "/api/v1/breaches", params={"agency": "PUPR", "from": "2026-11-01", "to": "2026-12-01"}
        )
    assert response.status_code == 200
    body = response.json()
    assert body["from"] == "2026-11-01T00:00:00+08:00"
    assert body["to"] == "2026-12-01T00:00:00+08:00"
    assert body["counts"] == {"routing": 0, "first_response": 1, "answer": 1}
    assert body["total"] == 2 == body["returned"]
    first, answer = body["breaches"]
    assert first["complaint_id"] == "C1" and first["clock"] == "first_response"
    assert first["agency"] == "PUPR" and first["official"] is None
    assert first["due_at"] == "2026-11-09T23:59:59+08:00"
    assert first["level"] == "ombudsman"
    assert set(first["escalations"]) == {"liaison", "head", "sekda", "ombudsman"}
    assert all(at.endswith("+08:00") for at in first["escalations"].values())
    assert first["open"] is True and first["resolved_at"] is None
    # Still open on 20 Dec 00:00: late by 40 days and 1 second, counted live.
    assert first["late_by_s"] == 40 * 86_400 + 1
    assert first["late_by"] == "P40DT1S"
    assert answer["clock"] == "answer" and answer["due_at"] == "2026-11-16T23:59:59+08:00"


async def test_a_late_first_response_is_recorded_resolved(world: Harness) -> None:
    async with client(world) as http:
        body = (await http.get("/api/v1/breaches", params={"agency": "DLH"})).json()
    by_clock = {b["clock"]: b for b in body["breaches"]}
    assert body["counts"]["first_response"] == 1
    late = by_clock["first_response"]
    # The acknowledgement came a day late (and reached SLA later still).
    assert late["open"] is False
    assert late["resolved_at"] == "2026-11-10T23:59:59+08:00"
    assert late["late_by_s"] == 86_400 and late["late_by"] == "P1D"
    assert late["level"] == "liaison"
    assert by_clock["answer"]["agency"] == "DLH"


async def test_period_and_clock_filters(world: Harness) -> None:
    async with client(world) as http:
        december = (
            await http.get("/api/v1/breaches", params={"from": "2026-12-01", "to": "2027-01-01"})
        ).json()
        only_answer = (
            await http.get("/api/v1/breaches", params={"clock": "answer", "agency": "PUPR"})
        ).json()
        after = await http.get(
            "/api/v1/breaches", params={"from": "2026-11-09T16:00:00+00:00", "to": "2026-11-11"}
        )
        at = await http.get(
            "/api/v1/breaches", params={"from": "2026-11-09T15:59:59Z", "to": "2026-11-11"}
        )
    assert [(b["complaint_id"], b["clock"]) for b in december["breaches"]] == [
        ("C3", "first_response"),
        ("C3", "answer"),
    ]
    assert {b["clock"] for b in only_answer["breaches"]} == {"answer"}
    assert only_answer["counts"]["first_response"] == 2  # counts cover every clock
    # 2026-11-09T16:00Z is 10 Nov 00:00 WITA: the 9 Nov 23:59:59 deadlines are before it.
    assert after.json()["total"] == 0
    assert at.json()["total"] == 2
    assert at.json()["from"] == "2026-11-09T23:59:59+08:00"


async def test_bad_requests(world: Harness) -> None:
    async with client(world) as http:
        assert (await http.get("/api/v1/breaches", params={"from": "1 Nov"})).status_code == 422
        reversed_ = await http.get(
            "/api/v1/breaches", params={"from": "2026-12-01", "to": "2026-11-01"}
        )
        assert reversed_.status_code == 422
        assert (await http.get("/api/v1/breaches", params={"region": "x"})).status_code == 404
        assert (await http.get("/api/v1/breaches", params={"clock": "lunch"})).status_code == 422
        # Bounds that exist in the region's calendar but not in UTC, or the other way round.
        for bound in ("0001-01-01", "0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00"):
            edge = await http.get("/api/v1/breaches", params={"from": bound})
            assert edge.status_code == 422, bound
            assert edge.json()["detail"] == "from: outside the calendar"


def test_iso_durations() -> None:
    assert iso_duration(0) == "PT0S"
    assert iso_duration(93_784) == "P1DT2H3M4S"
    assert iso_duration(86_400 * 3) == "P3D"
    assert iso_duration(3600.7) == "PT1H"
