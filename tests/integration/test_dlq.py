"""Poison messages end in the dead-letter store, and an operator can replay them.

A handler on a test-only durable consumer always fails; after `max_deliver`
attempts JetStream gives up and announces it. The real watcher process
(`python -m services.deadletters`, NATS user `dlq`) stores the message with the
error its handler noted; `lapor dlq list`, `replay` and `resolve` work on it,
and the dead-letter gauge counts only the records still waiting for one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from lapor.runtime.dead_letters import sealed_record
from lapor.runtime.pii import is_sealed
from lapor.runtime.settings import PiiPublicKeySettings, PiiSettings
from services.deadletters.repository import DeadLetterStore
from services.intake.metrics import IntakeMetrics, refresh_dead_letters
from tests.e2e.helpers import eventually
from tests.integration.dead_letters import Poison, poison_consumer, start_watcher
from tools.devstack import DEV_DIR_ENV, ROOT, Stack

pytestmark = [pytest.mark.integration]

SUBJECT = "lapor.event.test.poison"
DURABLE = "test-poison"
DB = "lapor_dlq"
PHONE = "+6281234500777"


@pytest.fixture(scope="module")
def dlq_stack(own_servers: Stack) -> Stack:
    return start_watcher(own_servers, DB)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def poison(dlq_stack: Stack, own_mongo: Any) -> AsyncIterator[Poison]:
    async with poison_consumer(dlq_stack, own_mongo[DB], SUBJECT, DURABLE, 3) as state:
        yield state


async def _publish(nc: Any, order: int) -> int:
    payload = {"order": order, "reply_to": PHONE}
    ack = await nc.jetstream().publish(
        SUBJECT, json.dumps(payload).encode(), headers={"Nats-Msg-Id": f"poison-{order}"}
    )
    return int(ack.seq)


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NATS_URL": stack.nats, "MONGO_URL": stack.mongo, "MONGO_DB": DB}
    env["COLUMNS"] = "250"
    return subprocess.run(
        [sys.executable, "-m", "tools.deadletters_cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_exhausted_message_is_stored_with_its_error(
    dlq_stack: Stack, poison: Poison, own_nc: Any, own_mongo: Any
) -> None:
    seq = await _publish(own_nc, 1)
    record_id = f"LAPOR_EVENTS:{seq}:{DURABLE}"
    dead = own_mongo[DB].dead_letters

    record = await eventually(lambda: dead.find_one({"_id": record_id}), timeout=30)

    assert len(poison.seen) == 3
    assert record["reason"] == "max_deliveries"
    assert record["deliveries"] == 3
    assert record["consumer"] == DURABLE and record["stream"] == "LAPOR_EVENTS"
    assert record["subject"] == SUBJECT and record["stream_sequence"] == seq
    assert "cannot handle order 1" in record["error"]
    assert record["headers"]["Nats-Msg-Id"] == "poison-1"
    # The payload (it may carry a phone number) is stored sealed, never in clear.
    assert "payload_b64" not in record and PHONE not in json.dumps(record, default=str)
    assert is_sealed(record["payload_sealed"])
    # Sealed by the watcher to the public key; only the operator's private key opens it.
    with pytest.raises(RuntimeError, match="LAPOR_PII_KEY"):
        await DeadLetterStore(own_mongo[DB], PiiPublicKeySettings().sealer()).get(record_id)
    opened = await DeadLetterStore(own_mongo[DB], opener=PiiSettings().opener()).get(record_id)
    assert opened is not None
    assert json.loads(base64.b64decode(opened["payload_b64"]))["order"] == 1


async def test_list_shows_dead_letters_without_phone_numbers(
    dlq_stack: Stack, poison: Poison, own_nc: Any, own_mongo: Any
) -> None:
    await eventually(lambda: own_mongo[DB].dead_letters.count_documents({}), timeout=30)

    listed = _cli(dlq_stack, "list", "--json")

    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert records and all(r["reason"] == "max_deliveries" for r in records)
    assert PHONE not in listed.stdout
    table = _cli(dlq_stack, "list")
    assert table.returncode == 0 and DURABLE in table.stdout and PHONE not in table.stdout


async def test_replay_republishes_once_with_a_new_message_id(
    dlq_stack: Stack, poison: Poison, own_nc: Any, own_mongo: Any
) -> None:
    dead = own_mongo[DB].dead_letters
    seq = await _publish(own_nc, 2)
    record_id = f"LAPOR_EVENTS:{seq}:{DURABLE}"
    await eventually(lambda: dead.find_one({"_id": record_id}), timeout=30)
    poison.failing = False
    seen_before = len(poison.seen)

    dry = _cli(dlq_stack, "replay", record_id, "--dry-run")
    assert dry.returncode == 0 and "would replay" in dry.stdout
    assert (await dead.find_one({"_id": record_id})).get("replayed_at") is None

    replayed = _cli(dlq_stack, "replay", record_id)

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    await eventually(lambda: _true(len(poison.seen) > seen_before), timeout=20)
    body, headers = poison.seen[-1]
    assert body["order"] == 2
    assert headers["Lapor-Replay-Of"] == record_id
    assert headers["Nats-Msg-Id"].startswith("replay-")
    stored = await dead.find_one({"_id": record_id})
    assert stored["replayed_at"] is not None and stored["replays"] == 1
    # --all replays only what was not replayed yet: record 1 from the first test.
    rest = _cli(dlq_stack, "replay", "--all")
    assert rest.returncode == 0 and record_id not in rest.stdout
    assert await dead.count_documents({"replayed_at": None}) == 0


async def test_watcher_catches_up_after_being_down(
    dlq_stack: Stack, poison: Poison, own_nc: Any, own_mongo: Any
) -> None:
    poison.failing = True
    dlq_stack.kill("dlq")
    seq = await _publish(own_nc, 3)
    record_id = f"LAPOR_EVENTS:{seq}:{DURABLE}"
    await eventually(lambda: _true(sum(b["order"] == 3 for b, _ in poison.seen) == 3), 30)

    dlq_stack.start("dlq")

    record = await eventually(
        lambda: own_mongo[DB].dead_letters.find_one({"_id": record_id}), timeout=30
    )
    assert record["reason"] == "max_deliveries"


def _lapor(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`lapor …` as an operator types it next to a running stack: nothing exported
    but the PII key, which this stack, too, took from the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "MONGO_URL", "MONGO_DB")}
    env.update({DEV_DIR_ENV: str(stack.workdir), "COLUMNS": "250"})
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_resolve_settles_a_dead_letter_and_the_gauge_counts_only_pending_ones(
    dlq_stack: Stack, poison: Poison, own_nc: Any, own_mongo: Any
) -> None:
    dead = own_mongo[DB].dead_letters
    seq = await _publish(own_nc, 4)
    record_id = f"LAPOR_EVENTS:{seq}:{DURABLE}"
    await eventually(lambda: dead.find_one({"_id": record_id}), timeout=30)
    # What is replayed below must not come back as a new dead letter.
    poison.failing = False
    metrics = IntakeMetrics(CollectorRegistry())
    await refresh_dead_letters(metrics, own_mongo[DB])
    # The replayed ones of the earlier tests no longer count.
    waiting = await dead.count_documents({"replayed_at": None})
    assert metrics.dead_letters.samples() == {("test",): waiting}

    pending = _lapor(dlq_stack, "dlq", "list", "--pending", "--json")
    assert pending.returncode == 0, pending.stderr
    assert record_id in {r["id"] for r in json.loads(pending.stdout)}
    resolved = _lapor(
        dlq_stack, "dlq", "resolve", record_id, "--reason", f"test order of {PHONE}, dropped"
    )

    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert f"resolved {record_id}" in resolved.stdout
    stored = await dead.find_one({"_id": record_id})
    assert stored["resolved_at"] is not None and stored["resolved_by"]
    assert "dropped" in stored["resolution"] and PHONE not in stored["resolution"]
    await refresh_dead_letters(metrics, own_mongo[DB])
    assert sum(metrics.dead_letters.samples().values()) == waiting - 1
    again = _lapor(dlq_stack, "dlq", "resolve", record_id, "--reason", "twice")
    assert again.returncode == 0 and "resolved before" in again.stdout
    assert (await dead.find_one({"_id": record_id}))["resolution"] == stored["resolution"]
    unknown = _lapor(dlq_stack, "dlq", "resolve", "LAPOR_EVENTS:0:nobody", "--reason", "x")
    assert unknown.returncode == 1
    # --all leaves a resolved one alone: it replays what still waits, nothing else.
    rest = _lapor(dlq_stack, "dlq", "replay", "--all")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert record_id not in rest.stdout
    assert (await dead.find_one({"_id": record_id})).get("replayed_at") is None
    await refresh_dead_letters(metrics, own_mongo[DB])
    assert metrics.dead_letters.samples() == {}


async def _true(value: bool) -> bool:
    return value


PAGED_DB = "lapor_dlq_paged"
PAGED_SUBJECT = "lapor.event.test.paged"
PAGED = 520


async def test_list_and_replay_go_past_one_page(
    dlq_stack: Stack, poison: Poison, own_nc: Any, own_mongo: Any
) -> None:
    # `poison` declares LAPOR_EVENTS, where the replays go, when this test runs alone.
    db = own_mongo[PAGED_DB]
    sealer = PiiPublicKeySettings().sealer()
    start = datetime.now(UTC)
    # Pairs stored in the same millisecond: paging must neither skip nor repeat one.
    await db.dead_letters.insert_many(
        [
            sealed_record(
                {
                    "_id": f"LAPOR_EVENTS:{n}:paged",
                    "reason": "max_deliveries",
                    "subject": PAGED_SUBJECT,
                    "stored_at": start + timedelta(milliseconds=n // 2),
                    "payload_b64": base64.b64encode(json.dumps({"n": n}).encode()).decode(),
                },
                sealer,
            )
            for n in range(PAGED)
        ]
    )

    first = await asyncio.to_thread(_cli, dlq_stack, "list", "--json", "--db", PAGED_DB)

    assert first.returncode == 0, first.stderr
    page = [r["id"] for r in json.loads(first.stdout)]
    assert len(page) == 500
    assert first.stderr.strip() == f"{PAGED - 500} more, use --after {page[-1]}"
    rest = await asyncio.to_thread(
        _cli, dlq_stack, "list", "--json", "--db", PAGED_DB, "--after", page[-1]
    )
    assert rest.returncode == 0 and "more" not in rest.stderr
    listed = page + [r["id"] for r in json.loads(rest.stdout)]
    assert sorted(listed) == sorted(f"LAPOR_EVENTS:{n}:paged" for n in range(PAGED))

    dry = await asyncio.to_thread(_cli, dlq_stack, "replay", "--all", "--dry-run", "--db", PAGED_DB)
    assert dry.returncode == 0 and dry.stdout.count("would replay") == PAGED

    replayed = await asyncio.to_thread(_cli, dlq_stack, "replay", "--all", "--db", PAGED_DB)

    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert replayed.stdout.count("replayed LAPOR_EVENTS:") == PAGED
    assert f"{PAGED} replayed, 0 failed" in replayed.stderr
    assert await db.dead_letters.count_documents({"replayed_at": None}) == 0
