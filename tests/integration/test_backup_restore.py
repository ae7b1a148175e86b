"""A backup restores: `lapor backup` of a running system, then the database and the
streams are lost, time passes while nothing runs, `lapor restore` brings the
complaints, their deadlines, the delivery log and a message still waiting in
its stream back, and the services catch up on their own: SLA fires the breach
that fell due meanwhile, intake files the waiting SMS.

Real nats-server, FerretDB and the four services as processes. The region's
first-response window is one clock minute, so that a deadline falls due
during the outage."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from typer.testing import CliRunner, Result

from lapor.contracts import subjects
from tests.e2e.helpers import eventually, sms_payload
from tools.cli import app
from tools.devstack import DEV_DIR_ENV, ROOT, SERVICES, Stack

pytestmark = [pytest.mark.integration]

BEFORE = "BANJAR jalan rusak berlubang besar di Jalan Ahmad Yani km 5 mohon segera diperbaiki"
WAITING = "BANJAR sampah menumpuk di pasar Martapura sudah seminggu tidak diangkut petugas"


def _one_minute_first_response(workdir: Path) -> Path:
    data = workdir / "backup-data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(ROOT / "data", data)
    policy_file = data / "regions" / "banjar" / "sla.yaml"
    policy = yaml.safe_load(policy_file.read_text(encoding="utf-8"))
    for priority in policy["priorities"].values():
        priority["first_response"] = {"unit": "clock_minutes", "amount": 1}
    policy_file.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def system(workdir: Path) -> Iterator[Stack]:
    stack = Stack.for_tests(workdir / "backup_restore", mongo_db="lapor_backup")
    stack.extra_env["LAPOR_DATA_DIR"] = str(_one_minute_first_response(workdir))
    try:
        stack.start_servers()
        stack.start_services(SERVICES)
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def clients(system: Stack) -> AsyncIterator[tuple[Any, Any]]:
    import nats
    from pymongo import AsyncMongoClient

    nc = await nats.connect(system.nats, name="lapor-tests")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system.mongo, tz_aware=True)
    yield nc, mongo[system.mongo_db]
    await nc.close()
    await mongo.close()


def _lapor(system: Stack, *args: str) -> Result:
    return CliRunner(env={DEV_DIR_ENV: str(system.workdir / "no-stack")}).invoke(
        app,
        [*args, "--mongo", system.mongo, "--db", system.mongo_db, "--nats", system.nats],
    )


async def _complaint_with(db: Any, words: str) -> dict[str, Any] | None:
    async for doc in db.complaints.find({}):
        if words in doc.get("text", ""):
            return dict(doc)
    return None


async def _count(db: Any) -> dict[str, int]:
    names = ("complaints", "sla_timers", "sla_clocks", "notifications", "notify_contacts")
    return {name: await db[name].count_documents({}) for name in names}


async def test_a_restored_backup_catches_up_on_what_fell_due(
    system: Stack, clients: tuple[Any, Any], tmp_path: Path
) -> None:
    nc, db = clients
    js = nc.jetstream()
    await js.publish(
        subjects.INBOUND_SMS, json.dumps(sms_payload("+6281234500601", BEFORE)).encode()
    )
    complaint = await eventually(lambda: _complaint_with(db, "Ahmad Yani"), timeout=60)

    async def first_response_timers() -> list[dict[str, Any]] | None:
        soon = datetime.now(UTC) + timedelta(minutes=5)
        found = await db.sla_timers.find(
            {"complaint_id": complaint["_id"], "due_at": {"$lte": soon}}
        ).to_list(None)
        return found or None

    timers = await eventually(first_response_timers, timeout=60)
    due = max(timer["due_at"] for timer in timers)
    # Intake is down when the second SMS comes: it waits in its stream, unconsumed.
    system.children["intake"].stop()
    await js.publish(
        subjects.INBOUND_SMS, json.dumps(sms_payload("+6281234500602", WAITING)).encode()
    )

    # Router, SLA and notify keep running: a backup of a live system.
    backup = await asyncio.to_thread(_lapor, system, "backup", str(tmp_path / "backup"))

    assert backup.exit_code == 0, backup.output
    assert "backed up" in backup.stdout
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert {c["name"] for c in manifest["collections"]} >= {"complaints", "sla_timers"}
    # The waiting SMS is in the stream copy, its number only sealed.
    copies = b"".join(
        gzip.open(path).read() for path in (tmp_path / "backup" / "streams").iterdir()
    )
    assert b"81234500602" not in copies and b"pasar Martapura" not in copies
    backed_up = await _count(db)
    assert backed_up["sla_timers"] >= len(timers)

    # The loss: every service stops, the database and the streams are gone.
    for name in list(system.children):
        if name not in ("nats", "ferretdb"):
            system.children[name].stop()
    await db.client.drop_database(system.mongo_db)
    for info in await js.streams_info():
        await js.delete_stream(info.config.name)
    assert await db.complaints.count_documents({}) == 0

    # Time passes while nothing runs: the first-response deadline falls due.
    await eventually(lambda: _true(datetime.now(UTC) > due + timedelta(seconds=1)), timeout=120)
    assert await db.sla_breaches.count_documents({}) == 0

    restored = await asyncio.to_thread(_lapor, system, "restore", str(tmp_path / "backup"))

    assert restored.exit_code == 0, restored.output
    assert await _count(db) == backed_up
    back = await db.complaints.find_one({"_id": complaint["_id"]})
    assert back is not None and back["history"][: len(complaint["history"])] == complaint["history"]
    assert len(await db.sla_timers.find({"complaint_id": complaint["_id"]}).to_list(None)) >= len(
        timers
    )
    intake_sms = await js.consumer_info("LAPOR_INBOUND", "intake-sms")
    assert intake_sms.num_pending >= 1

    system.start_services(SERVICES)

    # SLA's start-up sweep fires the breach that fell due while nothing ran ...
    breach = await eventually(
        lambda: db.sla_breaches.find_one(
            {"complaint_id": complaint["_id"], "clock": "first_response"}
        ),
        timeout=60,
    )
    assert breach["breached_at"] >= due
    # ... and intake files the SMS that was waiting, once.
    await eventually(lambda: _complaint_with(db, "pasar Martapura"), timeout=60)
    texts = [doc["text"] async for doc in db.complaints.find({})]
    assert sum("Ahmad Yani" in text for text in texts) == 1
    assert sum("pasar Martapura" in text for text in texts) == 1


async def _true(value: bool) -> bool:
    return value
