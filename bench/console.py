"""Server time of the console's worklist page with 100,000 stored complaints.

    .venv/bin/python -m bench.console [--complaints 100000] [--requests 300]
    .venv/bin/python -m bench --console      # the same, after the main bench

Starts its own nats-server, FerretDB, intake and the console on free loopback
ports (data folder `var/bench/console-<UTC time>/`), seeds complaints shaped as
intake stores them (`bench.scale.seeded_pair` plus intake's stored worklist
keys) into the complaints collection with intake's indexes in place, logs an
officer of the agency with the most open complaints in, and requests the
console's pages one after another. The server time is what the console itself
reports in its `Server-Timing` header (its own work plus its calls to intake);
the client time is the whole request as the bench sees it. The target: p95 of
the worklist page's server time <= 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench.scale import BATCH, _insert_retrying, seeded_pair
from bench.stats import percentile
from lapor.account_store import ensure_admin_account
from services.console.security import SESSION_COOKIE, Keys, Session
from services.intake.domain import PRIORITY_RANK, worklist_fields
from services.intake.repository import ComplaintRepository
from services.intake.tracking import new_tracking_id
from tools.devstack import CONSOLE, ROOT, Stack

TARGET_P95_MS = 200.0
_TIMING = re.compile(r"app;dur=([0-9.]+), services;dur=([0-9.]+)")
PAGES = {
    "worklist": "/",
    "worklist_page_5": "/?offset=100",
    "worklist_overdue": "/?overdue=1",
    "worklist_search": "/?q=jalan+rusak",
    "worklist_search_id": "/?q={tracking_id}",
    "worklist_state": "/?status=in_progress",
}


def stored_complaint(i: int, rng: random.Random, now: datetime) -> dict[str, Any]:
    complaint, _timers = seeded_pair(i, rng, now)
    complaint["priority_rank"] = PRIORITY_RANK[complaint["priority"]]
    complaint.update(worklist_fields(complaint))
    return complaint


async def seed(db: Any, count: int) -> Counter[str]:
    """`count` complaints; the number of open ones per agency."""
    rng = random.Random(19)  # noqa: S311 - the same data every run, not a secret
    now = datetime.now(UTC)
    open_by_agency: Counter[str] = Counter()
    for first in range(0, count, BATCH):
        docs = [stored_complaint(i, rng, now) for i in range(first, min(first + BATCH, count))]
        open_by_agency.update(d["open_agency"] for d in docs if d.get("open_agency"))
        await _insert_retrying(db["complaints"], docs)
        if (first // BATCH) % 20 == 0:
            print(f"  seeded {first + len(docs):,}/{count:,}", flush=True)
    return open_by_agency


async def one_with_a_tracking_id(db: Any, agency: str, count: int) -> str:
    """One more open complaint of the agency, with an id as intake gives (the seeded
    ones have ids a search does not take for tracking ids), to search for."""
    complaint = stored_complaint(count, random.Random(count), datetime.now(UTC))  # noqa: S311
    complaint |= {"_id": new_tracking_id(), "source_key": "seed:tracked"}
    complaint |= {"agency": agency, "state": "assigned"}
    complaint.update(worklist_fields(complaint))
    await db["complaints"].insert_one(complaint)
    await ComplaintRepository(db).sync_worklist()
    return str(complaint["_id"])


async def officer_session(intake: str, db: Any, agency: str) -> dict[str, Any]:
    """An officer's session token, made the way an admin and the officer would."""
    admin_password = "bench-admin-" + uuid.uuid4().hex
    await ensure_admin_account(db, "bench-admin", admin_password)
    async with httpx.AsyncClient(base_url=intake, timeout=600) as http:
        login = await http.post(
            "/api/v1/sessions", json={"username": "bench-admin", "password": admin_password}
        )
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['token']}"}
        username = "bench" + uuid.uuid4().hex[:6]
        created = await http.post(
            "/api/v1/accounts",
            json={
                "username": username,
                "name": "Bench Officer",
                "role": "agency",
                "agency": agency,
            },
            headers=admin,
        )
        created.raise_for_status()
        one_time = created.json()["password"]
        first = await http.post(
            "/api/v1/sessions", json={"username": username, "password": one_time}
        )
        first.raise_for_status()
        password = "bench-" + uuid.uuid4().hex
        bearer = {"Authorization": f"Bearer {first.json()['token']}"}
        changed = await http.post(
            "/api/v1/sessions/current/password",
            json={"current_password": one_time, "new_password": password},
            headers=bearer,
        )
        changed.raise_for_status()
        result: dict[str, Any] = first.json()
        return result


async def listed_count(intake: str, token: str, agency: str) -> int:
    """How many of the agency's open complaints its worklist holds (`X-Total-Count`)."""
    async with httpx.AsyncClient(base_url=intake, timeout=600) as http:
        answer = await http.get(
            f"/api/v1/agencies/{agency}/complaints",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        return int(answer.headers["x-total-count"])


async def measure(
    console: str, cookie: str, path: str, requests: int, warm_up: int
) -> dict[str, Any]:
    server, services, own, client, statuses = [], [], [], [], Counter[int]()
    async with httpx.AsyncClient(
        base_url=console, cookies={SESSION_COOKIE: cookie}, timeout=600
    ) as http:
        for n in range(warm_up + requests):
            started = time.perf_counter()
            response = await http.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            if n < warm_up:
                continue
            statuses[response.status_code] += 1
            found = _TIMING.search(response.headers.get("server-timing", ""))
            if found:
                total, waited = float(found.group(1)), float(found.group(2))
                server.append(total)
                services.append(waited)
                own.append(total - waited)
            client.append(elapsed)
    return {
        "path": path,
        "requests": requests,
        "statuses": dict(statuses),
        "server_p50_ms": _r(percentile(server, 50)),
        "server_p95_ms": _r(percentile(server, 95)),
        "server_p99_ms": _r(percentile(server, 99)),
        "services_p95_ms": _r(percentile(services, 95)),
        "console_own_p95_ms": _r(percentile(own, 95)),
        "client_p95_ms": _r(percentile(client, 95)),
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def run(
    complaints: int, requests: int, warm_up: int = 20, pages: tuple[str, ...] = tuple(PAGES)
) -> dict[str, Any]:
    workdir = ROOT / "var" / "bench" / f"console-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    stack = Stack.for_tests(workdir, with_dlq=False)
    stack.mongo_db = "lapor_bench_console"
    # A slow answer is measured, not cut off at the console's default 10 s.
    stack.extra_env["CONSOLE_BACKEND_TIMEOUT_S"] = "60"
    try:
        await asyncio.to_thread(stack.start_servers)
        await asyncio.to_thread(stack.start_services, ["intake"])
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo)
        db = client[stack.mongo_db]
        print(f"seeding {complaints:,} complaints", flush=True)
        started = time.perf_counter()
        open_by_agency = await seed(db, complaints)
        seed_s = time.perf_counter() - started
        # Complaints loaded in bulk reach the worklist through intake's sweep; list
        # them all before measuring, or the pages would show (and read) only some.
        print("listing them on the worklists", flush=True)
        await ComplaintRepository(db).sync_worklist()
        agency, open_count = open_by_agency.most_common(1)[0]
        tracking_id = await one_with_a_tracking_id(db, agency, complaints)
        open_count += 1
        login = await officer_session(stack.url("intake"), db, agency)
        listed = await listed_count(stack.url("intake"), login["token"], agency)
        if listed != open_count:
            raise RuntimeError(f"{agency}: {listed} listed of {open_count} open complaints")
        await asyncio.to_thread(stack.start_console)
        cookie = await _session_cookie(workdir, login)
        console = stack.url(CONSOLE)
        measured = {}
        load = [os.getloadavg()[0]]
        for name in pages:
            path = PAGES[name].format(tracking_id=tracking_id)
            print(f"measuring {name} ({path})", flush=True)
            measured[name] = await measure(console, cookie, path, requests, warm_up)
            load.append(os.getloadavg()[0])
        await client.close()
    finally:
        await asyncio.to_thread(stack.stop)
    p95s = [page["server_p95_ms"] for page in measured.values()]
    result = {
        "bench": "console",
        "at": datetime.now(UTC).isoformat(),
        "stored_complaints": complaints,
        "seed_seconds": round(seed_s, 1),
        "agency": agency,
        "agency_open_complaints": open_count,
        "target_worklist_server_p95_ms": TARGET_P95_MS,
        "target_met": all(p is not None and p <= TARGET_P95_MS for p in p95s),
        "load_average_1m": {"min": min(load), "max": max(load)},
        "pages": measured,
    }
    return result


async def _session_cookie(workdir: Path, login: dict[str, Any]) -> str:
    """The console's cookie for the officer's login session, sealed with the stack's key."""
    account = login["account"]
    session = Session(
        token=login["token"],
        expires_at=datetime.fromisoformat(login["expires_at"]),
        username=account["username"],
        name=account["name"],
        role=account["role"],
        agency=account["agency"],
    )
    key = (await asyncio.to_thread((workdir / "console_cookie_key").read_text)).strip()
    return Keys(key).seal(session)


def write(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "console.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "console.md").write_text(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Console worklist page",
        "",
        f"{result['stored_complaints']:,} stored complaints; agency {result['agency']} with "
        f"{result['agency_open_complaints']:,} open. Target: server p95 <= "
        f"{result['target_worklist_server_p95_ms']:.0f} ms on every page "
        f"({'met' if result['target_met'] else 'NOT met'}). Load average (1 min) while "
        f"measuring: {result['load_average_1m']['min']:.2f} to "
        f"{result['load_average_1m']['max']:.2f}.",
        "",
        "Server time = the console's own work + its calls to intake (`services`).",
        "",
        "| page | path | requests | server p50 ms | server p95 ms | server p99 ms "
        "| services p95 ms | console's own p95 ms | client p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, page in result["pages"].items():
        lines.append(
            f"| {name} | `{page['path']}` | {page['requests']} | {page['server_p50_ms']} "
            f"| {page['server_p95_ms']} | {page['server_p99_ms']} | {page['services_p95_ms']} "
            f"| {page['console_own_p95_ms']} | {page['client_p95_ms']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--complaints", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300, help="measured, per page")
    parser.add_argument("--warm-up", type=int, default=20, help="requests not measured")
    parser.add_argument("--pages", default=",".join(PAGES), help=", ".join(PAGES))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    pages = tuple(p for p in args.pages.split(",") if p)
    unknown = set(pages) - set(PAGES)
    if unknown:
        parser.error(f"unknown pages: {', '.join(sorted(unknown))}")
    result = asyncio.run(run(args.complaints, args.requests, args.warm_up, pages))
    write(result, args.out)
    print(markdown(result))
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
