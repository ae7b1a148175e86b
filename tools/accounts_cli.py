"""`lapor accounts`: officers' and admins' accounts, as the operator (the database owner).

The same functions as intake's admin API (`lapor.account_store`): a one-time
password is printed once and stored only hashed; disabling an account or
resetting its password ends its sessions at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lapor.account_store import MongoAccounts, create_account, reset_password, set_disabled
from lapor.accounts import ROLES, AccountError, account_view
from tools.terminal import fail, mongo_client, run

accounts_app = typer.Typer(
    help="Accounts of agency officers and Diskominfo admins (console logins)."
)
console = Console()

MongoUrl = Annotated[str, typer.Option("--mongo", envvar="MONGO_URL")]
MongoDb = Annotated[str, typer.Option("--db", envvar="MONGO_DB")]
LOCAL_MONGO = "mongodb://127.0.0.1:27017"
COMMANDS = ("create", "list", "disable", "enable", "reset-password")


async def _with_store(mongo_url: str, mongo_db: str, work: Any) -> Any:
    client = mongo_client(mongo_url)
    try:
        return await work(MongoAccounts(client[mongo_db]))
    finally:
        await client.close()


def _do(mongo_url: str, mongo_db: str, work: Any) -> Any:
    try:
        return run(_with_store(mongo_url, mongo_db, work), mongo_url=mongo_url)
    except AccountError as error:
        fail(error.message)


def _agencies(data_dir: Path, region: str) -> frozenset[str]:
    from lapor.directory import load_directory

    region_dir = data_dir / "regions" / region
    if not region_dir.is_dir():
        raise typer.BadParameter(f"no region {region!r} under {data_dir}", param_hint="--region")
    return frozenset(load_directory(region_dir).codes)


@accounts_app.command("create")
def accounts_create(
    username: Annotated[str, typer.Argument(help="3-32 characters: a-z 0-9 . _ -")],
    name: Annotated[str, typer.Option(help="Display name, e.g. 'Budi Santoso'")],
    role: Annotated[str, typer.Option(help="agency (an officer) or admin")] = "agency",
    agency: Annotated[str | None, typer.Option(help="Agency code of an officer")] = None,
    region: Annotated[str, typer.Option(help="Region id")] = "banjar",
    data_dir: Annotated[Path, typer.Option(envvar="LAPOR_DATA_DIR")] = Path("data"),
    mongo_url: MongoUrl = LOCAL_MONGO,
    mongo_db: MongoDb = "lapor",
) -> None:
    """Create an account; its one-time password is printed once (last line)."""
    if role not in ROLES:
        raise typer.BadParameter("agency or admin", param_hint="--role")
    agencies = _agencies(data_dir, region)

    async def work(store: MongoAccounts) -> tuple[dict[str, Any], str]:
        return await create_account(
            store,
            username=username,
            name=name,
            role=role,
            agency=agency,
            region=region,
            created_by="operator",
            now=datetime.now(UTC),
            agencies=agencies,
        )

    doc, password = _do(mongo_url, mongo_db, work)
    console.print(
        f"account {doc['_id']} ({role}{' ' + agency if agency else ''}, {region}) created; "
        "one-time password (to be changed at the first login):"
    )
    print(password)


@accounts_app.command("list")
def accounts_list(
    mongo_url: MongoUrl = LOCAL_MONGO,
    mongo_db: MongoDb = "lapor",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every account: username, name, role, agency, region, status, last login."""

    async def work(store: MongoAccounts) -> list[dict[str, Any]]:
        return await store.all()

    views = [account_view(doc) for doc in _do(mongo_url, mongo_db, work)]
    if as_json:
        print(json.dumps(views, indent=2, default=str, ensure_ascii=False))
        return
    table = Table("username", "name", "role", "agency", "region", "status", "last login")
    for view in views:
        status = "disabled" if view["disabled"] else "active"
        if view["must_change_password"]:
            status += ", must change password"
        last = view["last_login_at"]
        table.add_row(
            view["username"],
            view["name"],
            view["role"],
            view["agency"] or "-",
            view["region"] or "-",
            status,
            f"{last:%Y-%m-%d %H:%M}" if last else "-",
        )
    console.print(table)


def _switch(username: str, disabled: bool, mongo_url: str, mongo_db: str) -> None:
    async def work(store: MongoAccounts) -> dict[str, Any]:
        return await set_disabled(store, username, disabled, datetime.now(UTC))

    doc = _do(mongo_url, mongo_db, work)
    console.print(f"account {doc['_id']} {'disabled' if disabled else 'enabled'}")


@accounts_app.command("disable")
def accounts_disable(
    username: Annotated[str, typer.Argument()],
    mongo_url: MongoUrl = LOCAL_MONGO,
    mongo_db: MongoDb = "lapor",
) -> None:
    """Disable an account: its sessions stop working at once."""
    _switch(username, True, mongo_url, mongo_db)


@accounts_app.command("enable")
def accounts_enable(
    username: Annotated[str, typer.Argument()],
    mongo_url: MongoUrl = LOCAL_MONGO,
    mongo_db: MongoDb = "lapor",
) -> None:
    """Enable a disabled account again."""
    _switch(username, False, mongo_url, mongo_db)


@accounts_app.command("reset-password")
def accounts_reset_password(
    username: Annotated[str, typer.Argument()],
    mongo_url: MongoUrl = LOCAL_MONGO,
    mongo_db: MongoDb = "lapor",
) -> None:
    """A new one-time password, printed once (last line); the account's sessions end."""

    async def work(store: MongoAccounts) -> tuple[dict[str, Any], str]:
        return await reset_password(store, username, datetime.now(UTC))

    doc, password = _do(mongo_url, mongo_db, work)
    console.print(f"account {doc['_id']}: new one-time password (to be changed at the next login):")
    print(password)
