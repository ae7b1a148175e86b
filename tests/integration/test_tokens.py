"""API tokens on the real FerretDB: create (CLI) → use (API) → list with the last use →
revoke (CLI and admin API) → refused; expiry refused. The API's clock is injected:
nothing sleeps."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from services.intake.api import build_router
from services.intake.auth import hash_token
from services.intake.repository import ComplaintRepository
from tools.cli import app as cli
from tools.devstack import Stack

pytestmark = [pytest.mark.security]

DB = "tokens_it"
runner = CliRunner()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def lapor(servers: Stack, *args: str) -> str:
    result = runner.invoke(cli, [*args, "--mongo", servers.mongo, "--db", DB])
    assert result.exit_code == 0, result.output
    return result.output


def create(servers: Stack, *args: str) -> tuple[str, str]:
    """A new token via the CLI: (its id, the token)."""
    lines = lapor(servers, "token", "create", *args).strip().splitlines()
    token = lines[-1].strip()
    token_id = next(word for word in " ".join(lines[:-1]).split() if word.startswith("tok_"))
    return token_id, token


def listed(servers: Stack) -> tuple[dict[str, dict[str, Any]], str]:
    output = lapor(servers, "token", "list", "--json")
    return {view["id"]: view for view in json.loads(output)}, output


def api(servers: Stack, clock: Clock, calls: list[tuple[str, str, str | None]]) -> list[Any]:
    """Run (method, path, token) calls against intake's router in one event loop."""

    async def run() -> list[httpx.Response]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo, tz_aware=True)
        repo = ComplaintRepository(client[DB])

        async def unused(*_args: Any) -> Any:
            raise AssertionError("not called")

        app = FastAPI()
        app.include_router(
            build_router(
                lambda: repo,
                {"banjar": ZoneInfo("Asia/Makassar")},
                unused,
                unused,
                b"s" * 32,
                clock=clock,
            )
        )
        answers = []
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://intake"
            ) as http:
                for method, path, token in calls:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    answers.append(await http.request(method, path, headers=headers))
        finally:
            await client.close()
        return answers

    return asyncio.run(run())


async def _stored(servers: Stack, token: str) -> dict[str, Any] | None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo, tz_aware=True)
    try:
        return await ComplaintRepository(client[DB]).find_token(hash_token(token))
    finally:
        await client.close()


def stored(servers: Stack, token: str) -> dict[str, Any]:
    record = asyncio.run(_stored(servers, token))
    assert record is not None
    return record


WORKLIST = "/api/v1/agencies/PUPR/complaints"


@pytest.mark.integration
def test_create_use_list_revoke_refuse(own_servers: Stack) -> None:
    clock = Clock()
    admin_id, admin = create(own_servers, "--name", "rina", "--role", "admin")
    officer_id, officer = create(own_servers, "--name", "budi", "--agency", "PUPR")

    used, forbidden, unknown = api(
        own_servers,
        clock,
        [("GET", WORKLIST, officer), ("GET", "/api/v1/tokens", officer), ("GET", WORKLIST, "x")],
    )
    assert used.status_code == 200, used.text
    assert forbidden.status_code == 403 and "only admins" in forbidden.json()["detail"]
    assert unknown.status_code == 401
    first_use = stored(own_servers, officer)["last_used_at"]
    assert abs(first_use - clock.now) < timedelta(seconds=1)

    # Within the minute: no second write. After it: one.
    clock.now += timedelta(seconds=30)
    api(own_servers, clock, [("GET", WORKLIST, officer)])
    assert stored(own_servers, officer)["last_used_at"] == first_use
    clock.now += timedelta(seconds=31)
    api(own_servers, clock, [("GET", WORKLIST, officer)])
    assert abs(stored(own_servers, officer)["last_used_at"] - clock.now) < timedelta(seconds=1)

    views, output = listed(own_servers)
    assert views[officer_id]["last_used_at"] is not None
    assert views[officer_id]["status"] == "active" and views[officer_id]["agency"] == "PUPR"
    assert views[admin_id]["role"] == "admin"
    for secret in (officer, admin, hash_token(officer), hash_token(admin)):
        assert secret not in output

    lapor(own_servers, "token", "revoke", officer_id)
    (refused,) = api(own_servers, clock, [("GET", WORKLIST, officer)])
    assert refused.status_code == 401 and refused.json()["detail"].startswith("token revoked")
    views, _ = listed(own_servers)
    assert views[officer_id]["status"] == "revoked" and views[officer_id]["revoked_at"]

    missing = runner.invoke(
        cli, ["token", "revoke", "tok_0000", "--mongo", own_servers.mongo, "--db", DB]
    )
    assert missing.exit_code == 1


@pytest.mark.integration
def test_admins_list_and_revoke_through_the_api(own_servers: Stack) -> None:
    clock = Clock()
    _, admin = create(own_servers, "--name", "kominfo", "--role", "admin")
    partner_id, partner = create(own_servers, "--name", "kota-app", "--role", "partner")

    listing, revoked, again, unknown, anonymous, refused = api(
        own_servers,
        clock,
        [
            ("GET", "/api/v1/tokens", admin),
            ("POST", f"/api/v1/tokens/{partner_id}/revoke", admin),
            ("POST", f"/api/v1/tokens/{partner_id}/revoke", admin),
            ("POST", "/api/v1/tokens/tok_0000/revoke", admin),
            ("GET", "/api/v1/tokens", None),
            ("GET", "/api/v1/tokens", partner),
        ],
    )
    assert listing.status_code == 200
    shown = {view["id"]: view for view in listing.json()}
    assert shown[partner_id]["status"] == "active" and shown[partner_id]["name"] == "kota-app"
    assert partner not in listing.text and hash_token(partner) not in listing.text
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # the first time stays
    assert unknown.status_code == 404
    assert anonymous.status_code == 401
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]

    # Open311 takes the partner's api_key through the repository: refused there too.
    async def open311_lookup() -> Any:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_servers.mongo)
        try:
            return await ComplaintRepository(client[DB]).token(hash_token(partner))
        finally:
            await client.close()

    assert asyncio.run(open311_lookup()) is None


@pytest.mark.integration
def test_expired_tokens_are_refused(own_servers: Stack) -> None:
    clock = Clock()
    _, short = create(own_servers, "--name", "tamu", "--agency", "PUPR", "--days", "1")
    expiry = stored(own_servers, short)["expires_at"]
    assert abs(expiry - (clock.now + timedelta(days=1))) < timedelta(minutes=1)

    clock.now = expiry - timedelta(seconds=1)
    (before,) = api(own_servers, clock, [("GET", WORKLIST, short)])
    assert before.status_code == 200
    clock.now = expiry
    (after,) = api(own_servers, clock, [("GET", WORKLIST, short)])
    assert after.status_code == 401
    assert after.json()["detail"].startswith("token expired on ")

    # A token stored before expiries existed: 90 days after its creation.
    legacy = "lpt_legacy-" + "x" * 30
    created = datetime.now(UTC) - timedelta(days=100)

    async def insert_legacy() -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_servers.mongo)
        try:
            await client[DB].api_tokens.insert_one(
                {
                    "_id": hash_token(legacy),
                    "role": "admin",
                    "name": "old",
                    "agency": None,
                    "created_at": created,
                }
            )
        finally:
            await client.close()

    asyncio.run(insert_legacy())
    clock.now = datetime.now(UTC)
    (old,) = api(own_servers, clock, [("GET", "/api/v1/tokens", legacy)])
    assert old.status_code == 401 and "expired" in old.json()["detail"]
    views, _ = listed(own_servers)
    (legacy_view,) = [v for v in views.values() if v["name"] == "old"]
    assert legacy_view["id"].startswith("tok_") and legacy_view["status"] == "expired"
