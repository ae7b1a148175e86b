"""Intake's real handlers and consumers in the test process, on a module's own servers."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
from fastapi import FastAPI

from lapor.regions import load_regions, region_keywords
from lapor.runtime.broker import declare_consumers
from lapor.runtime.service import Late, build_runtime
from lapor.runtime.settings import InfraSettings, ServiceSettings
from services.intake.ports import IntakeDeps
from services.intake.repository import ComplaintRepository
from services.intake.settings import IntakeSettings
from services.intake.sms import RegionKeywords
from services.intake.wiring import announcements, create_app, register
from tools.devstack import ROOT, Stack


def intake_app(servers: Stack, database: str, **settings: Any) -> FastAPI:
    """The whole intake app, as its process builds it, on `servers` and `database`;
    `settings` override IntakeSettings fields. Its lifespan is not started."""
    infra = InfraSettings(  # type: ignore[call-arg]
        NATS_URL=servers.nats,
        MONGO_URL=servers.mongo,
        MONGO_DB=database,
        LAPOR_DATA_DIR=ROOT / "data",
        LOG_LEVEL="WARNING",
    )
    config = IntakeSettings(  # type: ignore[call-arg]
        infra=infra,
        LAPOR_PHONE_HASH_KEY=secrets.token_urlsafe(32),
        LAPOR_CITIZEN_LINK_KEY=secrets.token_urlsafe(32),
        **settings,
    )
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    app = create_app(config)
    # The app configures logging as a service process does; the test process keeps pytest's.
    root.handlers[:], root.level = handlers, level
    return app


@asynccontextmanager
async def serving_intake(servers: Stack, database: str, **settings: Any) -> AsyncIterator[FastAPI]:
    """`intake_app` with its lifespan running: database, consumers, HTTP API."""
    app = intake_app(servers, database, **settings)
    async with app.router.lifespan_context(app):
        yield app


def http_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")


@asynccontextmanager
async def running_intake(
    servers: Stack,
    mongo: Any,
    database: str,
    repo: ComplaintRepository | None = None,
    **overrides: Any,
) -> AsyncIterator[IntakeDeps]:
    infra = InfraSettings(NATS_URL=servers.nats, MONGO_URL=servers.mongo, MONGO_DB=database)  # type: ignore[call-arg]
    runtime = build_runtime("intake", ServiceSettings(infra=infra))
    deps_box: Late[IntakeDeps] = Late("deps")
    publishers = register(runtime, deps_box)
    db = mongo[database]
    repo = repo or ComplaintRepository(db)
    repo.outbox = repo.outbox or announcements(publishers)
    await repo.ensure_indexes()
    runtime.db.set(db)
    deps = IntakeDeps(
        repo=repo,
        region_keywords=RegionKeywords(region_keywords(load_regions(ROOT / "data"))),
        phone_key=b"k" * 32,
        sealer=infra.pii.sealer(),
        answered=publishers["answered"],
        command_rejected=publishers["command_rejected"],
    )
    deps = replace(deps, **overrides)
    deps_box.set(deps)
    await declare_consumers(runtime.broker)
    await runtime.broker.start()
    try:
        yield deps
    finally:
        await runtime.broker.stop()
