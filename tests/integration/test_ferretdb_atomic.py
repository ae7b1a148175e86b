"""Concurrent updates of one document from two processes lose nothing.

Upstream FerretDB v1.24.2 applies update and findAndModify as a query followed by
a write, each in its own SQLite transaction: two clients could both read version
7 of a document, both match the precondition {_id: x, version: 7} and both write
version 8, so one increment was lost (ferretdb/patches/0004-*). Here two OS
processes race on one document, as two replicas of a service would, against the
FerretDB of the test session and, when LAPOR_TEST_MONGO_URL is set, MongoDB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

DB = "lapor_ferretdb_atomic"

# One racer: connects, says "ready", waits for "go" on stdin so that both start
# together, then performs `count` successful operations and reports its retries.
WORKER = r"""
import json, sys
from pymongo import MongoClient, ReturnDocument

url, db_name, mode, count, tag = sys.argv[1:]
coll = MongoClient(url)[db_name]["race"]
coll.database.command("ping")
print("ready", flush=True)
sys.stdin.readline()

done = retries = 0
while done < int(count):
    if mode == "push":
        res = coll.update_one({"_id": "doc"}, {"$push": {"items": f"{tag}-{done}"}})
        assert res.matched_count == 1, res.raw_result
        done += 1
        continue
    v = coll.find_one({"_id": "doc"}, {"version": 1})["version"]
    guard, inc = {"_id": "doc", "version": v}, {"$inc": {"n": 1, "version": 1}}
    if mode == "update_one":
        ok = coll.update_one(guard, inc).matched_count == 1
    else:
        ok = coll.find_one_and_update(guard, inc, return_document=ReturnDocument.AFTER) is not None
    done += ok
    retries += not ok
print(json.dumps({"retries": retries}), flush=True)
"""


@pytest.fixture(scope="module")
def ferretdb_url(servers: Stack, workdir: Path) -> Iterator[str]:
    """The session's FerretDB; its own one when the session runs on MongoDB instead."""
    if servers.mongo_url is None:
        yield servers.mongo
        return
    own = Stack.for_tests(workdir / "ferretdb-atomic")
    try:
        own.start_ferretdb()
        yield own.mongo
    finally:
        own.stop()


@pytest.fixture(params=["ferretdb", "mongodb"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "mongodb":
        mongo = os.environ.get("LAPOR_TEST_MONGO_URL")
        if not mongo:
            pytest.skip("LAPOR_TEST_MONGO_URL is not set")
        return mongo
    return str(request.getfixturevalue("ferretdb_url"))


@pytest.fixture
def race(url: str) -> Iterator[Any]:
    """A fresh collection and a function that races two worker processes on it."""
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    client.drop_database(DB)

    def run(mode: str, count: int) -> list[dict[str, Any]]:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, DB, mode, str(count), tag],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for tag in ("a", "b")
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None
                assert worker.stdout.readline().strip() == "ready"
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            reports = []
            for worker in workers:
                out, _ = worker.communicate(timeout=60)
                assert worker.returncode == 0, out
                reports.append(json.loads(out))
            return reports
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()

    try:
        yield client[DB]["race"], run
    finally:
        client.drop_database(DB)
        client.close()


@pytest.mark.parametrize("mode", ["update_one", "find_one_and_update"])
def test_version_guarded_increments_from_two_processes_all_count(race: Any, mode: str) -> None:
    coll, run = race
    coll.insert_one({"_id": "doc", "n": 0, "version": 0})
    reports = run(mode, 500)
    doc = coll.find_one({"_id": "doc"})
    # Each process saw 500 of its guarded increments match; none may vanish.
    assert (doc["n"], doc["version"]) == (1000, 1000), (doc["n"], doc["version"], reports)


def test_pushes_from_two_processes_all_land(race: Any) -> None:
    coll, run = race
    coll.insert_one({"_id": "doc", "items": []})
    run("push", 300)
    items = coll.find_one({"_id": "doc"})["items"]
    expected = {f"{tag}-{i}" for tag in "ab" for i in range(300)}
    assert len(items) == 600 and set(items) == expected, (len(items), len(set(items)))
