"""A one-time password blocks a session in every service, not only in intake.

The session is made by logging in on the real intake app; SLA's real app reads the
same `api_tokens` collection on this module's FerretDB, and Open311 takes an
admin's token (a session too) as a form's `api_key`. Until the password is
changed, both refuse it with the same 403 as intake; once it is, both take it.
"""

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from lapor.account_store import MongoAccounts, create_account
from lapor.runtime.settings import InfraSettings
from lapor.tokens import CHANGE_FIRST
from services.sla.settings import SlaSettings
from services.sla.wiring import create_app as create_sla_app
from tests.integration.intake_harness import http_client, serving_intake
from tools.devstack import ROOT, Stack

pytestmark = [pytest.mark.integration]

DB = "lapor_password_first"
BANJAR = frozenset({"PUPR", "DINKES", "DISHUB", "DLH", "DISKOMINFO"})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def intake(own_servers: Stack, own_mongo: Any) -> AsyncIterator[httpx.AsyncClient]:
    await own_mongo.drop_database(DB)
    async with (
        serving_intake(own_servers, DB, http_rate_per_minute=0) as app,
        http_client(app) as client,
    ):
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sla(own_servers: Stack, intake: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    infra = InfraSettings(  # type: ignore[call-arg]
        NATS_URL=own_servers.nats,
        MONGO_URL=own_servers.mongo,
        MONGO_DB=DB,
        LAPOR_DATA_DIR=ROOT / "data",
        LOG_LEVEL="WARNING",
    )
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    app: FastAPI = create_sla_app(SlaSettings(infra=infra))
    # The app configures logging as a service process does; the test process keeps pytest's.
    root.handlers[:], root.level = handlers, level
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sla") as client:
            yield client


async def _one_time_admin(db: Any, username: str) -> str:
    _, password = await create_account(
        MongoAccounts(db),
        username=username,
        name=username.title(),
        role="admin",
        agency=None,
        region="banjar",
        created_by="test",
        now=datetime.now(UTC),
        agencies=BANJAR,
    )
    return password


async def _open311_post(intake: httpx.AsyncClient, api_key: str, text: str) -> httpx.Response:
    services = (await intake.get("/open311/v2/services.json")).json()
    form = {"api_key": api_key, "service_code": services[0]["service_code"], "description": text}
    return await intake.post("/open311/v2/requests.json", data=form)


@pytest.mark.security
async def test_a_one_time_password_session_is_refused_by_sla_and_open311_until_changed(
    intake: httpx.AsyncClient, sla: httpx.AsyncClient, own_mongo: Any
) -> None:
    db = own_mongo[DB]
    password = await _one_time_admin(db, "admin.baru")
    login = {"username": "admin.baru", "password": password}
    answer = await intake.post("/api/v1/sessions", json=login)
    assert answer.status_code == 201, answer.text
    token = answer.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    text = f"jembatan kayu di desa sungai batang hampir roboh {uuid.uuid4().hex[:6]}"

    refused = await sla.get("/api/v1/breaches", headers=bearer)
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": CHANGE_FIRST}
    posted = await _open311_post(intake, token, text)
    assert posted.status_code == 403, posted.text
    assert posted.json() == [{"code": 403, "description": CHANGE_FIRST}]
    assert await db.complaints.find_one({"text": text}) is None

    chosen = {"current_password": password, "new_password": "admin-pilihan-123"}
    changed = await intake.post("/api/v1/sessions/current/password", json=chosen, headers=bearer)
    assert changed.status_code == 204, changed.text

    allowed = await sla.get("/api/v1/breaches", headers=bearer)
    assert allowed.status_code == 200, allowed.text
    posted = await _open311_post(intake, token, text)
    assert posted.status_code == 201, posted.text
    tracking_id = posted.json()[0]["service_request_id"]
    stored = await db.complaints.find_one({"_id": tracking_id})
    assert stored is not None and stored["text"] == text
