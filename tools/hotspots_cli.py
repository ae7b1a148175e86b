"""`lapor hotspots`: the open hotspots, read from the database as the operator.

`--json` prints a list a script can read: per hotspot its id, agency, place
(kecamatan and desa, names and Kemendagri codes), member tracking ids, state
and when it formed; the largest first.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tools.terminal import DEFAULT_MONGO, MongoDb, OperatorMongoUrl, mongo_client, run

# services/hotspots/repository.py keeps them here; shown from two members on.
COLLECTION = "hotspots"
MIN_MEMBERS = 2


async def open_hotspots(
    mongo_url: str, mongo_db: str, agency: str | None = None
) -> list[dict[str, Any]]:
    client = mongo_client(mongo_url)
    try:
        query: dict[str, Any] = {"open": True, "size": {"$gte": MIN_MEMBERS}}
        if agency:
            query["agency"] = agency
        docs = [doc async for doc in client[mongo_db][COLLECTION].find(query).limit(10_000)]
    finally:
        await client.close()
    docs.sort(key=lambda d: (-len(d.get("members") or ()), d["formed_at"], d["_id"]))
    return [
        {
            "id": doc["_id"],
            "agency": doc["agency"],
            "place": {"kecamatan": doc.get("kecamatan"), "desa": doc.get("desa")},
            "members": list(doc.get("members") or ()),
            "state": doc["state"],
            "formed_at": doc["formed_at"].isoformat(),
        }
        for doc in docs
    ]


def hotspots_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    agency: Annotated[str | None, typer.Option(help="Only this agency's, e.g. PUPR")] = None,
    mongo_url: OperatorMongoUrl = DEFAULT_MONGO,
    mongo_db: MongoDb = "lapor",
) -> None:
    """The open hotspots: complaints of different citizens about one problem at one place."""
    found = run(open_hotspots(mongo_url, mongo_db, agency), mongo_url=mongo_url)
    if as_json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("hotspot", "agency", "kecamatan", "desa", "members", "state", "formed")
    for h in found:
        kecamatan, desa = h["place"]["kecamatan"], h["place"]["desa"]
        table.add_row(
            h["id"],
            h["agency"],
            kecamatan["name"] if kecamatan else "-",
            desa["name"] if desa else "-",
            str(len(h["members"])),
            h["state"],
            h["formed_at"][:16],
        )
    Console().print(table if found else "no open hotspots")
