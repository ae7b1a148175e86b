"""`lapor`: try the system as a citizen or an operator from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tools.accounts_cli import COMMANDS as ACCOUNT_COMMANDS
from tools.accounts_cli import accounts_app
from tools.backup_cli import backup_command, restore_command
from tools.deadletters_cli import dlq_app
from tools.hotspots_cli import hotspots_command
from tools.keys import keys_app
from tools.terminal import err, fail, mongo_client, progress, run

if TYPE_CHECKING:
    from lapor.contracts import InboundSms

app = typer.Typer(help="Lapor command line: simulate SMS, look up complaints, check routing.")
console = Console()

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats",
        envvar="NATS_URL",
        help="NATS server URL [default: the running `make run`, else nats://127.0.0.1:4222]",
        show_default=False,
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="LAPOR_API_URL",
        help="Intake HTTP base URL [default: the running `make run`, else http://127.0.0.1:8080]",
        show_default=False,
    ),
]
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_API_URL = "http://127.0.0.1:8080"


def local_stack() -> dict[str, str]:
    """What a running local stack wrote for the CLI (its admin NATS URL, the
    intake API, the database, its PII key file), or nothing when none runs.
    `make run` writes it under var/dev; LAPOR_DEV_DIR names another stack's folder."""
    from tools.devstack import DEV_DIR, DEV_DIR_ENV, OPERATOR_FILE

    path = Path(os.environ.get(DEV_DIR_ENV) or DEV_DIR) / OPERATOR_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


@app.command()
def sms(
    sender: Annotated[str, typer.Argument(help="Sender number, e.g. +6281234567890")],
    text: Annotated[str, typer.Argument(help='SMS text, e.g. "BANJAR jalan rusak di ..."')],
    nats_url: NatsUrl = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply")] = 20.0,
    gateway_id: Annotated[str | None, typer.Option(help="Gateway message id")] = None,
) -> None:
    """Publish a simulated SMS on lapor.inbound.sms and print the reply SMS.

    As the SMS gateway: of the running `make run`, its `gateway` login, the only
    one that may submit SMS."""
    import nats.errors

    url = nats_url or local_stack().get("gateway_nats_url") or DEFAULT_NATS_URL
    try:
        reply = asyncio.run(_send_sms(url, sender, text, gateway_id, timeout))
    except (OSError, nats.errors.Error) as exc:
        # The URL may carry a password: name the failure, not the URL.
        fail(
            f"NATS refused or unreachable: {type(exc).__name__}: {exc}. "
            "Is `make run` running? Otherwise set NATS_URL or --nats."
        )
    if reply is None:
        fail(f"no reply within {timeout:.0f}s")
    console.print(f"[bold]Reply to {reply['to']}[/bold] ({reply.get('complaint_id') or '-'}):")
    console.print(reply["text"])


async def _send_sms(
    nats_url: str, sender: str, text: str, gateway_id: str | None, timeout: float
) -> dict[str, Any] | None:
    from lapor.contracts import subjects

    expected_to = _as_e164(sender)
    nc = await _connect_once(nats_url)
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_reply(msg: Any) -> None:
        body = json.loads(msg.data)
        if body.get("to") == expected_to:
            await replies.put(body)

    # Listen before publishing so the reply cannot slip past.
    await nc.subscribe(subjects.OUTBOUND_SMS, cb=on_reply)
    message = _inbound_sms(sender, text, gateway_id)
    js = nc.jetstream()
    await js.publish(
        subjects.INBOUND_SMS,
        message.model_dump_json(by_alias=True).encode(),
        headers={"Nats-Msg-Id": message.gateway_id},
    )
    try:
        return await asyncio.wait_for(replies.get(), timeout)
    except TimeoutError:
        return None
    finally:
        await nc.close()


def _as_e164(sender: str) -> str:
    """The number as the reply will name it; as given when it is no phone number."""
    import phonenumbers

    try:
        return str(
            phonenumbers.format_number(
                phonenumbers.parse(sender, "ID"), phonenumbers.PhoneNumberFormat.E164
            )
        )
    except phonenumbers.NumberParseException:
        return sender


async def _connect_once(nats_url: str) -> Any:
    """A connection that tries once, not nats-py's minutes of retries: a person is
    waiting."""
    from urllib.parse import urlsplit

    import nats

    from lapor.runtime.broker import inbox_prefix

    async def quiet(_exc: Exception) -> None:
        pass  # the failure that matters is raised by connect and reported once

    # A login reads replies (the PubAck) on its own inbox only.
    user = urlsplit(nats_url.split(",")[0]).username
    return await nats.connect(
        nats_url,
        name="lapor-cli",
        inbox_prefix=inbox_prefix(user) if user else "_INBOX",
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.5,
        error_cb=quiet,
    )


def _inbound_sms(sender: str, text: str, gateway_id: str | None) -> InboundSms:
    """The SMS as the gateway hands it over, received now."""
    from lapor.contracts import InboundSms

    return InboundSms.model_validate(
        {
            "from": sender,
            "to": "1708",
            "text": text,
            "gateway_id": gateway_id or f"cli-{uuid.uuid4().hex[:12]}",
            "received_at": datetime.now().astimezone(),
        }
    )


@app.command()
def status(
    tracking_id: Annotated[str, typer.Argument(help="Tracking id from the SMS reply")],
    api: ApiUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON")] = False,
) -> None:
    """Show a complaint: state, agency, priority, deadlines and history."""
    import httpx

    base = api or local_stack().get("api_url") or DEFAULT_API_URL
    try:
        response = httpx.get(f"{base}/api/v1/complaints/{tracking_id}", timeout=10)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {base}: {type(exc).__name__}")
    if response.status_code == 404:
        fail(f"no complaint {tracking_id}")
    if response.is_error:
        fail(f"{base} answered {response.status_code} {response.reason_phrase}")
    data = response.json()
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    console.print(
        f"[bold]{data['tracking_id']}[/bold]  state [cyan]{data['state']}[/cyan]  "
        f"agency {data['agency'] or '-'}  priority {data['priority'] or '-'}"
    )
    console.print(f"received {data['received_at']}")
    for clock, due in data["deadlines"].items():
        console.print(f"  deadline {clock:<15} {due or '-'}")
    table = Table("at", "state", "actor", "reason")
    for entry in data["history"]:
        table.add_row(entry["at"], entry["state"] or "", entry["actor"], entry["reason"])
    console.print(table)


token_app = typer.Typer(help="API tokens for agency officers and Diskominfo admins.")


def _token_defaults(ctx: typer.Context) -> None:
    # The running `make run`'s database, as its operator (the services' own logins
    # may not write tokens), for what the command line and the environment leave open.
    stack = local_stack()
    found = {key: stack[key] for key in ("mongo_url", "mongo_db") if stack.get(key)}
    ctx.default_map = {command: found for command in ("create", "list", "revoke")}


app.add_typer(token_app, name="token", callback=_token_defaults)


def _accounts_defaults(ctx: typer.Context) -> None:
    # As `lapor token`: the running `make run`'s database, as its operator.
    stack = local_stack()
    found = {key: stack[key] for key in ("mongo_url", "mongo_db") if stack.get(key)}
    ctx.default_map = {command: found for command in ACCOUNT_COMMANDS}


app.add_typer(accounts_app, name="accounts", callback=_accounts_defaults)


def _operator_defaults(*keys: str) -> dict[str, str]:
    # The running `make run`'s servers and PII key, for what the command line and
    # the environment (NATS_URL, MONGO_URL, MONGO_DB, LAPOR_PII_KEY) leave open.
    stack = local_stack()
    found = {key: stack[key] for key in keys if stack.get(key)}
    if key_file := stack.get("pii_key_file"):
        with contextlib.suppress(OSError):
            found["pii_key"] = Path(key_file).read_text(encoding="utf-8").strip()
    return found


def _dlq_defaults(ctx: typer.Context) -> None:
    found = _operator_defaults("nats_url", "mongo_url", "mongo_db")
    ctx.default_map = {command: found for command in ("list", "replay", "resolve")}


app.add_typer(dlq_app, name="dlq", callback=_dlq_defaults)


def _keys_defaults(ctx: typer.Context) -> None:
    found = _operator_defaults("mongo_url", "mongo_db")
    ctx.default_map = {command: found for command in ("rotate", "check")}


app.add_typer(keys_app, name="keys", callback=_keys_defaults)
app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.command("hotspots")(hotspots_command)


@app.callback()
def _defaults(ctx: typer.Context) -> None:
    # Backup and restore work as the running `make run`'s operator and NATS admin.
    found = _operator_defaults("nats_url", "mongo_url", "mongo_db")
    ctx.default_map = {
        "backup": found,
        "restore": found,
        "hotspots": {k: v for k, v in found.items() if k in ("mongo_url", "mongo_db")},
    }


MongoUrlOption = Annotated[str, typer.Option("--mongo", envvar="MONGO_URL")]
MongoDbOption = Annotated[str, typer.Option("--db", envvar="MONGO_DB")]
LOCAL_MONGO = "mongodb://127.0.0.1:27017"


class TokenRole(StrEnum):
    """Who a token is for: the roles that call the API with a bearer token."""

    AGENCY = "agency"
    ADMIN = "admin"
    PARTNER = "partner"


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Officer or admin name, shown in the history")],
    role: Annotated[TokenRole, typer.Option(help="Who the token is for")] = TokenRole.AGENCY,
    agency: Annotated[str | None, typer.Option(help="Agency code for an officer")] = None,
    days: Annotated[int, typer.Option(min=1, max=365, help="Days until the token expires")] = 90,
    mongo_url: MongoUrlOption = LOCAL_MONGO,
    mongo_db: MongoDbOption = "lapor",
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from lapor.contracts.commands import Role
    from services.intake.auth import new_token, token_record

    if role is TokenRole.AGENCY and not agency:
        raise typer.BadParameter("an agency token names its agency", param_hint="--agency")
    token = new_token()
    record = token_record(token, Role(role.value), name, agency, days=days)
    run(_store_token(mongo_url, mongo_db, record), mongo_url=mongo_url)
    console.print(
        f"token {record['id']} for {name} ({role.value}{' ' + agency if agency else ''}), "
        f"expires {record['expires_at']:%Y-%m-%d %H:%M} UTC:"
    )
    print(token)


async def _store_token(mongo_url: str, mongo_db: str, record: dict[str, Any]) -> None:
    client = mongo_client(mongo_url)
    try:
        await client[mongo_db]["api_tokens"].insert_one(record)
    finally:
        await client.close()


@token_app.command("list")
def token_list(
    mongo_url: MongoUrlOption = LOCAL_MONGO,
    mongo_db: MongoDbOption = "lapor",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every token: id, name, role, agency, created, expires, last use, revoked.
    Never the token itself or its hash."""
    from datetime import UTC

    from services.intake.auth import token_view

    now = datetime.now(UTC)
    found = run(_tokens(mongo_url, mongo_db, None, now), mongo_url=mongo_url)
    views = [token_view(r, now) for r in found]
    if as_json:
        print(json.dumps(views, indent=2, default=str, ensure_ascii=False))
        return
    table = Table("id", "name", "role", "agency", "created", "expires", "last used", "status")
    for view in views:
        table.add_row(
            view["id"],
            view["name"],
            view["role"],
            view["agency"] or "-",
            _when(view["created_at"]),
            _when(view["expires_at"]),
            _when(view["last_used_at"]),
            view["status"]
            + (f" {_when(view['revoked_at'])}" if view["revoked_at"] is not None else ""),
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (tok_…), see `lapor token list`")],
    mongo_url: MongoUrlOption = LOCAL_MONGO,
    mongo_db: MongoDbOption = "lapor",
) -> None:
    """Revoke a token at once; it stays listed, marked revoked."""
    from datetime import UTC

    now = datetime.now(UTC)
    found = run(_tokens(mongo_url, mongo_db, token_id, now), mongo_url=mongo_url)
    if not found:
        fail(f"no token {token_id}")
    console.print(f"token {token_id} ({found[0]['name']}) revoked")


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


async def _tokens(
    mongo_url: str, mongo_db: str, revoke: str | None, now: datetime
) -> list[dict[str, Any]]:
    """All token records, or (`revoke`) the one revoked now, as a one-item list."""
    from services.intake.repository import ComplaintRepository

    client = mongo_client(mongo_url)
    try:
        repo = ComplaintRepository(client[mongo_db])
        if revoke is None:
            return await repo.list_tokens()
        record = await repo.revoke_token(revoke, now)
        return [record] if record else []
    finally:
        await client.close()


@app.command()
def route(
    text: Annotated[str | None, typer.Argument(help="Complaint text")] = None,
    region: Annotated[str, typer.Option(help="Region id")] = "banjar",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    stdin: Annotated[bool, typer.Option("--stdin", help="One text per line from stdin")] = False,
    data_dir: Annotated[Path, typer.Option(envvar="LAPOR_DATA_DIR")] = Path("data"),
) -> None:
    """Decide agency and priority for a text with exactly the router service's code."""
    from services.router.domain import Router

    router = Router.load(data_dir / "regions" / region)
    # One output line per input line, a blank one included (it goes to triage like
    # an empty SMS would), so results can be pasted next to the corpus line by line.
    texts = (line.rstrip("\r\n") for line in sys.stdin) if stdin else [text or ""]
    for line in texts:
        decision = router.decide(line).as_json()
        if as_json or stdin:
            print(json.dumps(decision, ensure_ascii=False), flush=True)
        else:
            console.print(decision)


class ReportFormat(StrEnum):
    JSON = "json"
    HTML = "html"
    TEXT = "text"


@app.command()
def report(
    output_format: Annotated[
        ReportFormat, typer.Option("--format", help="json, html (one page with charts) or text")
    ] = ReportFormat.TEXT,
    mongo_url: Annotated[str, typer.Option("--mongo", envvar="MONGO_URL")] = (
        "mongodb://127.0.0.1:27017"
    ),
    mongo_db: Annotated[str, typer.Option("--db", envvar="MONGO_DB")] = "lapor",
    region: Annotated[str, typer.Option(help="Region id")] = "banjar",
    start: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First day (local), inclusive"),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last day (local), inclusive"),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file")] = None,
    min_volume: Annotated[int, typer.Option(min=1, help="Complaints due to be ranked")] = 5,
    data_dir: Annotated[Path, typer.Option(envvar="LAPOR_DATA_DIR")] = Path("data"),
) -> None:
    """Agency performance report: per agency and service, a fair ranking, weak services."""
    from lapor.report import build_report, render_html, render_text
    from lapor.report.period import load_labels, period_bounds, region_timezone

    try:
        lower, upper = period_bounds(
            start.date() if start else None,
            end.date() if end else None,
            region_timezone(data_dir, region),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with progress() as shown:
        step = shown.add_task("reading complaints", total=3)
        data = run(_report_data(mongo_url, mongo_db, region, lower, upper), mongo_url=mongo_url)
        shown.update(step, advance=1, description="ranking agencies")
        result = build_report(data, labels=load_labels(data_dir, region), min_volume=min_volume)
        shown.update(step, advance=1, description=f"rendering {output_format.value}")
        if output_format is ReportFormat.JSON:
            text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        elif output_format is ReportFormat.HTML:
            text = render_html(result)
        else:
            text = render_text(result)
        shown.update(step, advance=1, description="report ready")
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}")
        err.print(f"report written to {out}")


async def _report_data(
    mongo_url: str, mongo_db: str, region: str, start: datetime | None, end: datetime | None
) -> Any:
    from lapor.report import fetch_report_data

    client = mongo_client(mongo_url)
    try:
        return await fetch_report_data(client[mongo_db], region=region, start=start, end=end)
    finally:
        await client.close()


if __name__ == "__main__":
    app()
