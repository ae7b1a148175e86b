"""A session whose account must still change its one-time password does nothing in
any service that reads officers' tokens (`lapor.tokens`), and every route that
depends on that check documents the 403 (`lapor.runtime.http`)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CollectorRegistry

from lapor.runtime.http import ErrorBody, create_http_app, refusals
from lapor.tokens import (
    CHANGE_FIRST,
    CHANGE_FIRST_DOC,
    Officer,
    in_memory_tokens,
    officer_dependency,
    password_refusal,
)
from services.intake.auth import CallerDependency

SESSION = {"kind": "session", "account": "nina", "name": "Nina", "role": "agency"}
TOKENS = {
    "pending-officer": SESSION | {"agency": "PUPR", "must_change_password": True},
    "pending-admin": SESSION | {"role": "admin", "agency": None, "must_change_password": True},
    "chosen": SESSION | {"agency": "PUPR", "must_change_password": False},
    "api-token": {"role": "agency", "agency": "PUPR", "name": "pupr-officer"},
    "partner": {"role": "partner", "name": "mitra"},
}


def test_only_a_pending_password_change_refuses_a_usable_token() -> None:
    assert password_refusal(TOKENS["pending-officer"]) == CHANGE_FIRST
    assert password_refusal(TOKENS["chosen"]) is None
    assert password_refusal(TOKENS["api-token"]) is None


def _officers_app() -> FastAPI:
    router = APIRouter()
    Reader = Annotated[Officer, Depends(officer_dependency(in_memory_tokens(TOKENS)))]

    @router.get("/read")
    async def read(reader: Reader) -> dict[str, Any]:
        return {"role": reader.role, "agency": reader.agency}

    app = FastAPI()
    app.include_router(router)
    return app


async def _get(token: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_officers_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        return await http.get("/read", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.security
@pytest.mark.parametrize("token", ["pending-officer", "pending-admin"])
async def test_a_one_time_password_session_is_refused_by_the_shared_dependency(token: str) -> None:
    refused = await _get(token)
    assert refused.status_code == 403
    assert refused.json() == {"detail": CHANGE_FIRST}


@pytest.mark.security
@pytest.mark.parametrize("token", ["chosen", "api-token"])
async def test_sessions_with_a_chosen_password_and_api_tokens_still_read(token: str) -> None:
    allowed = await _get(token)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {"role": "agency", "agency": "PUPR"}


@pytest.mark.security
async def test_a_partner_token_is_still_no_officer() -> None:
    refused = await _get("partner")
    assert refused.status_code == 403 and refused.json()["detail"] != CHANGE_FIRST


def _documented_app() -> FastAPI:
    """Routes as the services declare them, built into an app the way every service is."""
    reader = officer_dependency(in_memory_tokens({}))
    shared = refusals(_403="not an admin's token")
    router = APIRouter()

    @router.get("/with-403", responses=shared)
    async def with_403(_: Annotated[Officer, Depends(reader)]) -> dict[str, str]:
        return {}

    @router.get("/same-answers-no-token", responses=shared)
    async def same_answers_no_token() -> dict[str, str]:
        return {}

    @router.get("/without-403")
    async def without_403(_: Annotated[Officer, Depends(reader)]) -> dict[str, str]:
        return {}

    async def admin(officer: Annotated[Officer, Depends(reader)]) -> Officer:
        return officer

    @router.get("/nested")
    async def nested(_: Annotated[Officer, Depends(admin)]) -> dict[str, str]:
        return {}

    pending_allowed = CallerDependency(lambda: None, lambda: None, password_pending=True)  # type: ignore[arg-type,return-value]

    @router.get("/password-pending")
    async def password_pending(_: Annotated[Any, Depends(pending_allowed)]) -> dict[str, str]:
        return {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    return create_http_app(
        service="test",
        broker=None,
        registry=CollectorRegistry(),
        ready_checks={},
        lifespan=lifespan,
        routers=[router],
    )


def test_every_route_behind_the_check_documents_its_403() -> None:
    paths = _documented_app().openapi()["paths"]

    def answer(path: str) -> dict[str, Any]:
        found: dict[str, Any] = paths[path]["get"]["responses"].get("403", {})
        return found

    assert answer("/with-403")["description"] == f"not an admin's token, or {CHANGE_FIRST_DOC}"
    created = answer("/without-403")
    assert created["description"] == CHANGE_FIRST_DOC.capitalize()
    schema = created["content"]["application/json"]["schema"]
    assert schema == {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
    assert CHANGE_FIRST_DOC.capitalize() == answer("/nested")["description"]
    # Answers shared with a route that reads no token stay as they were there.
    assert answer("/same-answers-no-token")["description"] == "not an admin's token"
    assert answer("/password-pending") == {}
