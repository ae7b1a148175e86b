"""An agency's worklist page in order from the index, and its count from the index, on
our FerretDB build: the order of `worklist_key` must be exactly the worklist's order
(urgent first, nearest pending deadline, none last, oldest first), also when the build
cannot walk the index and sorts in memory instead."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from services.intake.repository import ComplaintRepository
from services.intake.worklist import WORKLIST_ENTRIES, WORKLIST_KEY, worklist_entry, worklist_query
from services.intake.worklist_api import worklist_filters, worklist_page

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
OPEN = ["assigned", "in_progress", "needs_info", "responded"]


def _entries(agency: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Mixed priorities (one not yet ranked), deadlines and none, equal deadlines
    and equal receipt times, so that every part of the order decides somewhere."""
    rnd = random.Random(seed)
    docs = []
    for i in range(n):
        due = rnd.choice([None, T0 + timedelta(hours=rnd.randrange(-48, 48))])
        doc = {
            "_id": f"LPR-{agency}-{i:04d}",
            "open_agency": agency,
            "agency": agency,
            "state": rnd.choice(OPEN),
            "priority_rank": rnd.choice([0, 1, 2, 2, None]),
            "next_deadline": due,
            "has_next_deadline": 0 if due is None else 1,
            "received_at": T0 - timedelta(minutes=rnd.randrange(0, 5)),
            "text": rnd.choice(["jalan rusak", "lampu mati", "sampah"]),
            "version": 1,
        }
        docs.append({"_id": doc["_id"]} | worklist_entry(doc))
    return docs


def _expected(docs: list[dict[str, Any]]) -> list[str]:
    """The worklist's order from the fields themselves (a missing value sorts lowest)."""

    def key(d: dict[str, Any]) -> tuple[Any, ...]:
        rank = d["priority_rank"]
        due = d["next_deadline"]
        return (
            (rank is not None, rank or 0),
            -d["has_next_deadline"],
            (due is not None, due or T0),
            d["received_at"],
            d["_id"],
        )

    return [d["_id"] for d in sorted(docs, key=key)]


async def _repo(own_mongo: Any, name: str) -> tuple[Any, ComplaintRepository]:
    await own_mongo.drop_database(name)
    database = own_mongo[name]
    repo = ComplaintRepository(database)
    await repo.ensure_indexes()
    return database, repo


async def test_pages_come_in_the_worklists_order_from_the_index(own_mongo: Any) -> None:
    await own_mongo.drop_database("lapor_worklist_key_order")
    database = own_mongo["lapor_worklist_key_order"]
    # The index databases made before the key still have, first: it must not be used.
    old = [("open_agency", 1), ("priority_rank", 1), ("has_next_deadline", -1)]
    await database[WORKLIST_ENTRIES].create_index([*old, ("next_deadline", 1)])
    repo = ComplaintRepository(database)
    await repo.ensure_indexes()
    docs = _entries("PUPR", 120, seed=19)
    await database[WORKLIST_ENTRIES].insert_many([*docs, *_entries("DLH", 30, seed=7)])

    pages = [await repo.worklist("PUPR", OPEN, 25, offset=o) for o in range(0, 125, 25)]
    assert [d["_id"] for page in pages for d in page] == _expected(docs)
    assert await repo.count_worklist("PUPR", OPEN) == 120
    only = ["assigned", "needs_info"]
    assert [d["_id"] for d in await repo.worklist("PUPR", only, 200)] == _expected(
        [d for d in docs if d["state"] in only]
    )
    assert await repo.count_worklist("PUPR", only) == sum(d["state"] in only for d in docs)
    overdue = worklist_filters(None, True, T0)
    late = [d for d in docs if d["next_deadline"] is not None and d["next_deadline"] < T0]
    assert [d["_id"] for d in await repo.worklist("PUPR", OPEN, 200, also=overdue)] == (
        _expected(late)
    )
    assert await repo.count_worklist("PUPR", OPEN, overdue) == len(late)

    # Served by the index, no sort in memory or in SQLite.
    explained = await database.command(
        "explain",
        {
            "find": WORKLIST_ENTRIES,
            "filter": worklist_query("PUPR", OPEN),
            "sort": {WORKLIST_KEY: 1},
        },
    )
    plan = " ".join(explained["queryPlanner"]["Plan"])
    assert "open_agency_1_worklist_key_1" in plan and "TEMP B-TREE" not in plan, plan
    assert explained["sortPushdown"] is True
    await own_mongo.drop_database("lapor_worklist_key_order")


@pytest.mark.parametrize(
    "odd",
    [
        "00|0| space sorts below the closing quote",
        "00|0!",
        'quote"and\\backslash',
        "ünïcode",
    ],
)
async def test_keys_the_index_would_misorder_are_sorted_in_memory(own_mongo: Any, odd: str) -> None:
    """A key with a space, '!', an escape or non-ASCII text (whatever the service never
    writes): the build must not trust the index's JSON-text order, and the page is
    still in MongoDB's order."""
    database, repo = await _repo(own_mongo, "lapor_worklist_key_odd")
    docs = _entries("PUPR", 40, seed=3)
    await database[WORKLIST_ENTRIES].insert_many(docs[8:])
    # A check that found nothing is remembered until the next write.
    assert [d["_id"] for d in await repo.worklist("PUPR", OPEN, 200)] == _expected(docs[8:])
    docs[5][WORKLIST_KEY] = odd
    docs[6][WORKLIST_KEY] = odd[:4]
    docs[7][WORKLIST_KEY] = 12  # not a string: never on the list
    await database[WORKLIST_ENTRIES].insert_many(docs[:8])

    got = [d["_id"] for d in await repo.worklist("PUPR", OPEN, 200)]
    strings = [d for d in docs if isinstance(d[WORKLIST_KEY], str)]
    assert got == [d["_id"] for d in sorted(strings, key=lambda d: d[WORKLIST_KEY].encode())]
    explained = await database.command(
        "explain",
        {
            "find": WORKLIST_ENTRIES,
            "filter": worklist_query("PUPR", OPEN),
            "sort": {WORKLIST_KEY: 1},
        },
    )
    assert explained["sortPushdown"] is False
    await own_mongo.drop_database("lapor_worklist_key_odd")


async def test_counts_by_equality_count_strings_only(own_mongo: Any) -> None:
    """The count from the index counts what MongoDB counts: an objectId with the same
    text as the agency's code is not that code."""
    database, repo = await _repo(own_mongo, "lapor_worklist_count")
    oid = ObjectId()
    docs = _entries(str(oid), 6, seed=5)
    docs[0]["open_agency"] = oid
    await database[WORKLIST_ENTRIES].insert_many(docs)
    assert await repo.count_worklist(str(oid), OPEN) == 5
    assert len(await repo.worklist(str(oid), OPEN)) == 5
    # A count is remembered until the next write.
    await database[WORKLIST_ENTRIES].update_one(
        {"_id": docs[1]["_id"]}, {"$set": {"open_agency": "DLH"}}
    )
    assert await repo.count_worklist(str(oid), OPEN) == 4
    state = docs[2]["state"]
    before = await repo.count_worklist(str(oid), [state])
    await database[WORKLIST_ENTRIES].insert_one(
        {**docs[2], "_id": "LPR-EXTRA", WORKLIST_KEY: "02|1|-|-|LPR-EXTRA"}
    )
    assert await repo.count_worklist(str(oid), [state]) == before + 1
    assert await repo.count_worklist(str(oid), OPEN) == 5
    await own_mongo.drop_database("lapor_worklist_count")


async def test_entries_listed_before_the_key_get_it(own_mongo: Any) -> None:
    database, repo = await _repo(own_mongo, "lapor_worklist_key_fill")
    docs = _entries("PUPR", 30, seed=11)
    for doc in docs:
        del doc[WORKLIST_KEY]
    await database[WORKLIST_ENTRIES].insert_many(docs)
    await database[WORKLIST_ENTRIES].delete_many({"_id": {"$regex": "^~"}})
    assert await repo.worklist("PUPR", OPEN) == []  # old shape: not yet listed

    await repo.ensure_indexes()
    assert [d["_id"] for d in await repo.worklist("PUPR", OPEN, 200)] == _expected(docs)
    await own_mongo.drop_database("lapor_worklist_key_fill")


async def test_words_narrow_the_rows_and_counts_stop_at_their_bound(own_mongo: Any) -> None:
    """Words of a search are pushed to SQLite as LIKE conditions that only narrow the
    rows (the regex decides): case, 'k' and 's' folding and arrays of strings included."""
    database, repo = await _repo(own_mongo, "lapor_worklist_words")
    docs = _entries("PUPR", 80, seed=23)
    texts = {
        0: "JALAN RUSAK di depan pasar",
        1: "jalan ru\u017fa\u212a berat",  # long s and Kelvin sign fold to s and k
        2: "jalanrusak tanpa spasi",
        3: "rusak jalan",
        4: "jalan saja",
    }
    for i, doc in enumerate(docs):
        doc["text"] = texts.get(i, "lampu mati")
    docs[5]["text"] = ["lampu", "Jalan Rusak"]
    await database[WORKLIST_ENTRIES].insert_many(docs)

    also = worklist_filters("jalan rusak", None, T0)
    found = {d["_id"] for d in await repo.worklist("PUPR", OPEN, 200, also=also)}
    assert found == {docs[i]["_id"] for i in (0, 1, 2, 3, 5)}
    assert await repo.count_worklist("PUPR", OPEN, also) == 5
    assert await repo.count_worklist("PUPR", OPEN, also, up_to=3) == 4
    assert await repo.count_worklist("PUPR", OPEN, also, up_to=5) == 5
    explained = await database.command(
        "explain",
        {"find": WORKLIST_ENTRIES, "filter": worklist_query("PUPR", OPEN, also)},
    )
    assert explained["queryPlanner"]["Query"].count('->>"text" LIKE ?') == 2
    await own_mongo.drop_database("lapor_worklist_words")


async def test_a_write_after_a_check_is_seen(own_mongo: Any) -> None:
    """The build remembers a check that found nothing only until the next write: an
    update or a delete of an entry counts like an insert."""
    database, repo = await _repo(own_mongo, "lapor_worklist_key_writes")
    docs = _entries("PUPR", 30, seed=29)
    await database[WORKLIST_ENTRIES].insert_many(docs)
    assert [d["_id"] for d in await repo.worklist("PUPR", OPEN, 200)] == _expected(docs)

    await database[WORKLIST_ENTRIES].update_one(
        {"_id": docs[0]["_id"]}, {"$set": {WORKLIST_KEY: docs[1][WORKLIST_KEY] + " later"}}
    )
    docs[0][WORKLIST_KEY] = docs[1][WORKLIST_KEY] + " later"
    got = [d["_id"] for d in await repo.worklist("PUPR", OPEN, 200)]
    assert got == [d["_id"] for d in sorted(docs, key=lambda d: d[WORKLIST_KEY].encode())]

    await database[WORKLIST_ENTRIES].delete_one({"_id": docs[0]["_id"]})
    assert [d["_id"] for d in await repo.worklist("PUPR", OPEN, 200)] == _expected(docs[1:])
    await own_mongo.drop_database("lapor_worklist_key_writes")


async def test_a_filtered_page_counts_to_a_bound_or_is_its_own_count(own_mongo: Any) -> None:
    database, repo = await _repo(own_mongo, "lapor_worklist_bound")
    docs = _entries("PUPR", 160, seed=31)
    for i, doc in enumerate(docs):
        doc["text"] = "lampu mati" if i < 130 else "jalan rusak"
    await database[WORKLIST_ENTRIES].insert_many(docs)

    lamps = worklist_filters("lampu", None, T0)
    page, total, more = await worklist_page(repo, "PUPR", OPEN, lamps, 25, 0)
    assert (len(page), total, more) == (25, 100, True)
    page, total, more = await worklist_page(repo, "PUPR", OPEN, lamps, 25, 100)
    assert (len(page), total, more) == (25, 130, False)
    roads = worklist_filters("jalan rusak", None, T0)
    page, total, more = await worklist_page(repo, "PUPR", OPEN, roads, 25, 0)
    assert (len(page), total, more) == (25, 30, False)
    page, total, more = await worklist_page(repo, "PUPR", OPEN, roads, 25, 25)
    assert (len(page), total, more) == (5, 30, False)  # a short page is its own count
    page, total, more = await worklist_page(repo, "PUPR", OPEN, roads, 25, 50)
    assert (len(page), total, more) == (0, 30, False)
    await own_mongo.drop_database("lapor_worklist_bound")
