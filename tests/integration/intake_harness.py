"""Intake's real handlers and consumers in the test process, on a module's own servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from lapor.devstack import ROOT, Stack
from lapor.regions import load_regions, region_keywords
from lapor.runtime.broker import declare_consumers
from lapor.runtime.service import Late, build_runtime
from lapor.runtime.settings import InfraSettings, ServiceSettings
from services.intake import handlers
from services.intake.repository import ComplaintRepository
from services.intake.sms import RegionKeywords
from services.intake.wiring import announcements, register


@asynccontextmanager
async def running_intake(
    servers: Stack,
    mongo: Any,
    database: str,
    repo: ComplaintRepository | None = None,
    **overrides: Any,
) -> AsyncIterator[handlers.IntakeDeps]:
    infra = InfraSettings(NATS_URL=servers.nats, MONGO_URL=servers.mongo, MONGO_DB=database)  # type: ignore[call-arg]
    runtime = build_runtime("intake", ServiceSettings(infra=infra))
    deps_box: Late[handlers.IntakeDeps] = Late("deps")
    publishers = register(runtime, deps_box)
    db = mongo[database]
    repo = repo or ComplaintRepository(db)
    repo.outbox = repo.outbox or announcements(publishers)
    await repo.ensure_indexes()
    runtime.db.set(db)
    deps = handlers.IntakeDeps(
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
