"""`lapor keys`: re-seal stored personal data under the current key after a rotation.

A rotation gives every process a new `LAPOR_PII_KEY` (its public half to those
that only seal) and lists the old key in `LAPOR_PII_OLD_KEYS`, so that values
sealed before still open. `lapor keys rotate` then makes the old values go: it
reads every sealed value the database holds (the table
`lapor.runtime.db_access.SEALED_VALUES`), opens it with the old key and seals
it again under the current one, in the form its reader expects. A value
already under the current key is left alone, so a run that was interrupted is
simply run again, and a second run changes nothing. Each value is replaced
only if it is still the one that was read: a record a service changed in the
meantime is counted and re-sealed on the next run.

`lapor keys check` (and the end of every rotation) scans every collection for
values sealed under any other key, wherever they are; when none is left, the
old key can be removed from `LAPOR_PII_OLD_KEYS`. Events already in the
JetStream streams are not in the database and keep their old seal until they
age out: see README, "Rotating secrets".
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from lapor.runtime import db_access
from lapor.runtime.pii import PREFIX, SEALED_PREFIX, PiiCipher, PiiKeyError, PiiOpener
from tools.terminal import DEFAULT_MONGO, MongoDb, env_option, with_pii_keys
from tools.terminal import OperatorMongoUrl as MongoUrl

Document = dict[str, Any]

BATCH = 500
# A sealed value wherever it sits, also inside an announcement's JSON text.
_SEALED_VALUE = re.compile(rf"\b({PREFIX}|{SEALED_PREFIX})\.([0-9a-f]{{8}})\.")

keys_app = typer.Typer(help="Personal-data keys: re-seal stored values after a rotation.")


@dataclass
class Tally:
    """What a rotation did in one collection."""

    resealed: int = 0
    current: int = 0
    changed_meanwhile: int = 0
    unopenable: int = 0


@dataclass
class Resealer:
    """Opens with the current and the old keys; seals under the current key only."""

    key: str
    old_keys: tuple[str, ...] = ()
    cipher: PiiCipher = field(init=False)
    opener: PiiOpener = field(init=False)

    def __post_init__(self) -> None:
        self.cipher = PiiCipher(self.key, self.old_keys)
        self.opener = PiiOpener(self.key, self.old_keys)
        self._sealer = self.opener.sealer()

    def current_ids(self) -> set[tuple[str, str]]:
        return {(PREFIX, self.cipher.key_id), (SEALED_PREFIX, self._sealer.key_id)}

    def is_current(self, value: str, symmetric: bool) -> bool:
        wanted = (PREFIX, self.cipher.key_id) if symmetric else (SEALED_PREFIX, self._sealer.key_id)
        return value.startswith(f"{wanted[0]}.{wanted[1]}.")

    def reseal(self, value: str, context: str, symmetric: bool) -> str:
        plain = self.opener.open_bytes(value, context)
        if symmetric:
            return self.cipher.seal_bytes(plain, context)
        return self._sealer.seal_bytes(plain, context)


def _get(doc: Document, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)  # type: ignore[assignment]
    return doc


async def _batches(collection: Any, query: Document, projection: Document) -> Any:
    """Every matching document, by `_id`, a batch at a time (no cursor lives long)."""
    after: Any = None
    while True:
        page = dict(query)
        if after is not None:
            page["_id"] = {"$gt": after}
        found = [doc async for doc in collection.find(page, projection).sort("_id", 1).limit(BATCH)]
        if not found:
            return
        yield found
        after = found[-1]["_id"]


async def _replace(collection: Any, doc_id: Any, path: str, old: Any, new: Any) -> bool:
    # Only if it is still the value that was read: a service may have rewritten it.
    done = await collection.update_one({"_id": doc_id, path: old}, {"$set": {path: new}})
    return bool(done.modified_count)


async def _reseal_field(
    collection: Any, doc: Document, path: str, bound_to: str, symmetric: bool, keys: Resealer
) -> str:
    value = _get(doc, path)
    if not isinstance(value, str) or not value.startswith((PREFIX + ".", SEALED_PREFIX + ".")):
        return "none"
    if keys.is_current(value, symmetric):
        return "current"
    try:
        new = keys.reseal(value, str(_get(doc, bound_to)), symmetric)
    except PiiKeyError:
        return "unopenable"
    return "resealed" if await _replace(collection, doc["_id"], path, value, new) else "changed"


def _sealed_event_fields(body: Document) -> Iterator[str]:
    for name, value in body.items():
        if name.endswith("_sealed") and isinstance(value, str):
            yield name


async def _reseal_outbox(collection: Any, doc: Document, keys: Resealer) -> list[str]:
    from lapor.contracts.events import contact_context

    outcomes: list[str] = []
    for entry_key, entry in (doc.get(db_access.OUTBOX_BODIES) or {}).items():
        text = entry.get("body") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            continue
        body = json.loads(text)
        changed = False
        for name in _sealed_event_fields(body):
            if keys.is_current(body[name], symmetric=False):
                outcomes.append("current")
                continue
            try:
                context = contact_context(str(body.get("event_id")), name)
                body[name] = keys.reseal(body[name], context, symmetric=False)
            except PiiKeyError:
                outcomes.append("unopenable")
                continue
            changed = True
            outcomes.append("resealed")
        if changed:
            path = f"{db_access.OUTBOX_BODIES}.{entry_key}.body"
            # Compact, as the services write announcements (pydantic's JSON).
            new = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            if not await _replace(collection, doc["_id"], path, text, new):
                outcomes = [o if o != "resealed" else "changed" for o in outcomes]
    return outcomes


async def rotate_collection(db: Any, name: str, keys: Resealer, shown: Any = None) -> Tally:
    """Re-seal every sealed value of collection `name` under the current key."""
    paths = db_access.SEALED_VALUES[name]
    symmetric = name in db_access.SYMMETRIC_SEALED
    collection = db[name]
    plain_paths = {path: bound for path, bound in paths.items() if path != db_access.OUTBOX_BODIES}
    projection: Document = {path: 1 for path in plain_paths} | {
        bound: 1 for bound in plain_paths.values()
    }
    query: Document = {}
    if db_access.OUTBOX_BODIES in paths:
        projection[db_access.OUTBOX_BODIES] = 1
        if not plain_paths:
            # Only announcements still waiting to be published carry sealed values.
            query = {"announce": "pending"}
    total = await collection.count_documents(query)
    task = shown.add_task(name, total=total) if shown is not None else None
    tally = Tally()
    async for batch in _batches(collection, query, projection):
        for doc in batch:
            outcomes = [
                await _reseal_field(collection, doc, path, bound, symmetric, keys)
                for path, bound in plain_paths.items()
            ]
            if db_access.OUTBOX_BODIES in paths:
                outcomes += await _reseal_outbox(collection, doc, keys)
            counted = Counter(outcomes)
            tally.resealed += counted["resealed"]
            tally.current += counted["current"]
            tally.changed_meanwhile += counted["changed"]
            tally.unopenable += counted["unopenable"]
            if task is not None:
                shown.advance(task)
    return tally


async def rotate(db: Any, keys: Resealer, shown: Any = None) -> dict[str, Tally]:
    return {
        name: await rotate_collection(db, name, keys, shown) for name in db_access.SEALED_VALUES
    }


def _old_seals(value: Any, current: set[tuple[str, str]], found: Counter[str]) -> None:
    if isinstance(value, str):
        for match in _SEALED_VALUE.finditer(value):
            if (match.group(1), match.group(2)) not in current:
                found[f"{match.group(1)}.{match.group(2)}"] += 1
    elif isinstance(value, dict):
        for item in value.values():
            _old_seals(item, current, found)
    elif isinstance(value, list):
        for item in value:
            _old_seals(item, current, found)


async def old_seals(db: Any, keys: Resealer, shown: Any = None) -> dict[str, Counter[str]]:
    """Per collection, values sealed under a key other than the current one, by key id:
    every collection is scanned, not only the known places."""
    current = keys.current_ids()
    left: dict[str, Counter[str]] = {}
    for name in sorted(await db.list_collection_names()):
        found: Counter[str] = Counter()
        total = await db[name].estimated_document_count()
        task = shown.add_task(f"checking {name}", total=total) if shown is not None else None
        async for batch in _batches(db[name], {}, {}):
            for doc in batch:
                _old_seals(doc, current, found)
            if task is not None:
                shown.advance(task, len(batch))
        if found:
            left[name] = found
    return left


# -- command line -------------------------------------------------------------------

PiiKey = Annotated[
    str, env_option("--pii-key", "LAPOR_PII_KEY", "The new (current) private personal-data key")
]
PiiOldKeys = Annotated[
    str,
    env_option("--pii-old-keys", "LAPOR_PII_OLD_KEYS", "The keys being retired, comma-separated"),
]


@keys_app.command("rotate")
def rotate_command(
    mongo_url: MongoUrl = DEFAULT_MONGO,
    mongo_db: MongoDb = "lapor",
    pii_key: PiiKey = "",
    pii_old_keys: PiiOldKeys = "",
) -> None:
    """Re-seal every stored personal value under LAPOR_PII_KEY, opening old ones with
    LAPOR_PII_OLD_KEYS; then say whether any value still needs an old key."""
    from tools.terminal import run

    keys = with_pii_keys(Resealer, pii_key, pii_old_keys)
    tallies, left = run(_rotate(mongo_url, mongo_db, keys), mongo_url=mongo_url)
    for name, tally in tallies.items():
        print(
            f"{name}: {tally.resealed} re-sealed, {tally.current} already current, "
            f"{tally.changed_meanwhile} changed meanwhile, {tally.unopenable} unopenable"
        )
    _say_left(left)
    stuck = sum(t.unopenable + t.changed_meanwhile for t in tallies.values())
    raise typer.Exit(1 if stuck or left else 0)


@keys_app.command("check")
def check_command(
    mongo_url: MongoUrl = DEFAULT_MONGO,
    mongo_db: MongoDb = "lapor",
    pii_key: PiiKey = "",
) -> None:
    """Scan every collection for values sealed under another key than LAPOR_PII_KEY;
    exit 1 while there are any."""
    from tools.terminal import run

    keys = with_pii_keys(Resealer, pii_key, "")
    left = run(_check(mongo_url, mongo_db, keys), mongo_url=mongo_url)
    _say_left(left)
    raise typer.Exit(1 if left else 0)


def _say_left(left: dict[str, Counter[str]]) -> None:
    from tools.terminal import err

    if not left:
        print("no value needs an old key: LAPOR_PII_OLD_KEYS can be emptied")
        return
    for name, found in left.items():
        by_key = ", ".join(f"{n} under {key_id}" for key_id, n in sorted(found.items()))
        err.print(f"{name}: still sealed under old keys: {by_key}", markup=False, soft_wrap=True)


async def _rotate(
    mongo_url: str, mongo_db: str, keys: Resealer
) -> tuple[dict[str, Tally], dict[str, Counter[str]]]:
    from tools.terminal import mongo_client, progress

    client = mongo_client(mongo_url)
    try:
        db = client[mongo_db]
        with progress() as shown:
            tallies = await rotate(db, keys, shown)
            return tallies, await old_seals(db, keys, shown)
    finally:
        await client.close()


async def _check(mongo_url: str, mongo_db: str, keys: Resealer) -> dict[str, Counter[str]]:
    from tools.terminal import mongo_client, progress

    client = mongo_client(mongo_url)
    try:
        with progress() as shown:
            return await old_seals(client[mongo_db], keys, shown)
    finally:
        await client.close()
