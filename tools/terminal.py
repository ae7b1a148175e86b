"""What every `lapor` command shares, so that each fails and reports like a tool.

- A failure is one line on standard error and a non-zero exit, never a
  traceback: an operator reads the line, a script reads the exit code.
- A server that does not answer fails within seconds: the drivers' defaults
  (30 s server selection for pymongo, minutes of reconnects for nats-py) are
  right for services, which must ride out an outage, and wrong for a person
  waiting at a prompt.
- Progress goes to standard error too, so standard output stays what a
  command produced (JSON, a report, a token) and can be piped.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")

err = Console(stderr=True, highlight=False)

# Seconds a command waits for a server before it says it cannot reach it.
CONNECT_TIMEOUT_S = 3.0


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` as one line on standard error and end the command with `code`."""
    err.print(f"lapor: {message}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def where(url: str | None) -> str:
    """A server URL without its login: URLs here carry passwords."""
    if not url:
        return "the default address"
    return re.sub(r"//[^@/]*@", "//", url.split("?", 1)[0])


def mongo_client(url: str, app: str = "lapor-cli") -> Any:
    """A database client that gives up after a few seconds when nobody answers."""
    from pymongo import AsyncMongoClient

    timeout_ms = int(CONNECT_TIMEOUT_S * 1000)
    return AsyncMongoClient(
        url,
        appname=app,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
    )


async def connect_nats(url: str, name: str = "lapor-cli", **options: Any) -> Any:
    """One connection attempt per server, no reconnects: a person is waiting."""
    import nats

    async def quiet(_exc: Exception) -> None:
        pass  # connect raises the failure that matters; `run` reports it once

    return await nats.connect(
        url.split(","),
        name=name,
        allow_reconnect=False,
        # Counted per server: 0 would mean "forever" to nats-py's server pool.
        max_reconnect_attempts=1,
        reconnect_time_wait=0.5,
        connect_timeout=CONNECT_TIMEOUT_S,
        error_cb=quiet,
        **options,
    )


def _reason(exc: BaseException) -> str:
    # pymongo appends its whole topology description; the first clause says it all.
    text = str(exc).split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0]
    return text.strip() or type(exc).__name__


def run(
    work: Coroutine[Any, Any, T], *, mongo_url: str | None = None, nats_url: str | None = None
) -> T:
    """Run a command's async work; a server that cannot be reached or refuses the
    login ends the command with one line naming it (without its password)."""
    import nats.errors
    from pymongo.errors import ConnectionFailure, OperationFailure

    hint = "Is `make run` running? Otherwise set {var} or {option}."
    try:
        return asyncio.run(work)
    except ConnectionFailure as exc:
        fail(
            f"cannot reach the database at {where(mongo_url)} ({_reason(exc)}). "
            + hint.format(var="MONGO_URL", option="--mongo")
        )
    except OperationFailure as exc:
        said = (exc.details or {}).get("errmsg") or type(exc).__name__
        fail(f"the database at {where(mongo_url)} refused: {said} (code {exc.code})")
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        if nats_url is None:
            raise
        fail(
            f"cannot reach NATS at {where(nats_url)} ({type(exc).__name__}: {_reason(exc)}). "
            + hint.format(var="NATS_URL", option="--nats")
        )


@contextmanager
def progress() -> Iterator[Progress]:
    """A progress display on standard error: bars on a terminal, the final state
    otherwise. A failure takes the display away: its one line is what remains."""
    shown = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )
    with shown:
        try:
            yield shown
        except BaseException:
            shown.live.transient = True
            raise


def env_option(flag: str, envvar: str, help: str | None = None) -> Any:
    """An option that the environment may give; --help never prints its value, which
    may be a URL with a password in it, or a private key."""
    return typer.Option(flag, envvar=envvar, show_default=False, help=help)


DEFAULT_MONGO = "mongodb://127.0.0.1:27017"
DEFAULT_NATS = "nats://127.0.0.1:4222"
# The operator's database options of the commands that read or rewrite everything
# stored (backup, restore, key rotation).
OperatorMongoUrl = Annotated[
    str,
    env_option(
        "--mongo",
        "MONGO_URL",
        "MongoDB URL, as the operator (default: the running `make run`'s, "
        "else mongodb://127.0.0.1:27017)",
    ),
]
MongoDb = Annotated[str, env_option("--db", "MONGO_DB")]
# The retired private personal-data keys, which still open what they sealed.
PiiOldKeys = Annotated[str, env_option("--pii-old-keys", "LAPOR_PII_OLD_KEYS")]


def private_pii_keys(key: str, old_keys: str) -> tuple[str, tuple[str, ...]]:
    """The private personal-data key and the retired ones, from their options; a
    missing key is a usage error."""
    if not key:
        raise typer.BadParameter("set LAPOR_PII_KEY (or --pii-key)", param_hint="LAPOR_PII_KEY")
    return key, tuple(k.strip() for k in old_keys.split(",") if k.strip())


def with_pii_keys(make: Callable[[str, tuple[str, ...]], T], key: str, old_keys: str) -> T:
    """`make(key, retired_keys)` from the key options; a missing or malformed key is a
    usage error, not a traceback."""
    from lapor.runtime.pii import PiiKeyError  # the cryptography only for the commands needing it

    try:
        return make(*private_pii_keys(key, old_keys))
    except PiiKeyError as exc:
        raise typer.BadParameter(str(exc), param_hint="LAPOR_PII_KEY") from None
