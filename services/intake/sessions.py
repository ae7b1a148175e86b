"""Logins: a username and password become a session token; failures are throttled.

A session is an ordinary API token record (`auth.session_record`), so every
endpoint that takes a bearer token takes a session, with the account's role
and agency. A wrong username, a wrong password and a disabled account get the
same answer (`lapor.accounts.WRONG_CREDENTIALS`) after the same work, so
usernames cannot be probed. Failures are recorded (username, time, hashed
client address, never the password); beyond the limits of
`lapor.accounts.throttled_until` a login is refused with 429 before the
password is looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from lapor.account_store import AccountStore
from lapor.accounts import (
    ADDRESS_FAILURES,
    FAILURE_WINDOW,
    USER_FAILURES,
    WRONG_CREDENTIALS,
    AccountError,
    check_password,
    hash_password,
    needs_rehash,
    normalize_username,
    retry_after_seconds,
    throttled_until,
    verify_password,
)
from lapor.runtime.outbox import start_periodic
from services.intake.auth import new_token, session_record

log = logging.getLogger("lapor.intake.sessions")

Document = dict[str, Any]


class FailureCounter(Protocol):
    """Counts failed logins by reason (the metric `lapor_login_failures_total`)."""

    def __call__(self, reason: str) -> None: ...


def login_failures_metric(registry: CollectorRegistry) -> Counter:
    return Counter(
        "lapor_login_failures_total",
        "Failed logins to intake's API, by reason (wrong_credentials, throttled)",
        ["reason"],
        registry=registry,
    )


def uncounted(reason: str) -> None:
    """A `FailureCounter` for callers without metrics (tools, tests)."""


class LoginRefused(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Session:
    token: str
    record: Document
    account: Document


async def _throttle(
    store: AccountStore,
    username: str,
    client: str | None,
    last_login: datetime | None,
    now: datetime,
) -> datetime | None:
    """Until when logins for `username` or from `client` are refused, or None."""
    since = now - FAILURE_WINDOW
    # A success clears the username's count: only failures after it count.
    user_since = max(since, last_login) if last_login is not None else since
    until = throttled_until(
        await store.recent_failures("username", username, user_since), USER_FAILURES, now
    )
    if client is not None:
        by_address = throttled_until(
            await store.recent_failures("client", client, since), ADDRESS_FAILURES, now
        )
        if by_address is not None and (until is None or by_address > until):
            until = by_address
    return until


async def login(
    store: AccountStore,
    username: str,
    password: str,
    *,
    client: str | None,
    now: datetime,
    hours: float,
    count: FailureCounter = uncounted,
) -> Session:
    """A new session for the account, or `LoginRefused` (401 or 429 with Retry-After)."""
    name = normalize_username(username)[:64]
    account = await store.get(name)
    last_login = account.get("last_login_at") if account else None
    if (until := await _throttle(store, name, client, last_login, now)) is not None:
        count("throttled")
        log.warning("login refused: too many failed logins", extra={"username": name})
        wait = retry_after_seconds(until, now)
        minutes = -(-wait // 60)
        raise LoginRefused(
            429, f"too many failed logins: try again in {minutes} minute(s)", retry_after=wait
        )
    stored_hash = account.get("password_hash") if account else None
    matches = verify_password(stored_hash, password)
    if account is None or not matches or account.get("disabled_at") is not None:
        await store.add_failure({"username": name, "at": now, "client": client})
        count("wrong_credentials")
        log.warning("login failed", extra={"username": name})
        raise LoginRefused(401, WRONG_CREDENTIALS)
    token = new_token()
    record = session_record(token, account, hours=hours, now=now)
    await store.add_session(record)
    fields: Document = {"last_login_at": now}
    if stored_hash and needs_rehash(stored_hash):
        fields["password_hash"] = hash_password(password)
    after = await store.update(name, fields)
    # Disabled or given a new password while this login was checked: the session
    # stored above may have escaped that revocation; it is revoked here instead.
    if (
        after is None
        or after.get("disabled_at") is not None
        or (after.get("password_changed_at") != account.get("password_changed_at"))
    ):
        await store.revoke_sessions(name, now)
        raise LoginRefused(401, WRONG_CREDENTIALS)
    return Session(token, record, after)


async def change_password(
    store: AccountStore,
    username: str,
    current: str,
    new: str,
    *,
    keep_token_id: str | None,
    now: datetime,
) -> Document:
    """Set a chosen password; the account's other sessions end."""
    account = await store.get(username)
    if account is None or account.get("disabled_at") is not None:
        raise AccountError("this account is disabled", status=403)
    if not verify_password(account.get("password_hash"), current):
        raise AccountError("the current password is wrong", status=403)
    check_password(new)
    if new == current:
        raise AccountError("the new password must differ from the current one")
    doc = await store.update(
        username,
        {
            "password_hash": hash_password(new),
            "password_changed_at": now,
            "must_change_password": False,
        },
    )
    await store.revoke_sessions(username, now, keep_token_id=keep_token_id)
    if doc is None:
        raise AccountError("this account is gone", status=403)
    if keep_token_id is not None:
        await store.lift_password_change(username, keep_token_id)
    return doc


# One round deletes at most PURGE_BATCH x PURGE_BATCHES records of each kind; what
# is left waits for the next round, so a backlog never holds the database long.
PURGE_BATCH = 500
PURGE_BATCHES = 20


@dataclass(frozen=True)
class Purged:
    sessions: int
    failures: int


async def purge_expired(
    store: AccountStore,
    now: datetime,
    failures_kept: timedelta,
    *,
    batch: int = PURGE_BATCH,
    batches: int = PURGE_BATCHES,
) -> Purged:
    """Delete sessions that have expired (revoked ones too, once past their expiry)
    and failed logins older than `failures_kept`, in batches.

    MongoDB would expire both with TTL indexes; FerretDB v1 has none (it refuses
    them), so intake deletes them itself, over range queries on indexed dates.
    Failures inside the throttling window are always kept."""
    kept_since = now - max(failures_kept, FAILURE_WINDOW)
    sessions = await _in_batches(lambda: store.purge_sessions(now, batch), batch, batches)
    failures = await _in_batches(lambda: store.purge_failures(kept_since, batch), batch, batches)
    return Purged(sessions, failures)


async def _in_batches(delete: Callable[[], Awaitable[int]], batch: int, batches: int) -> int:
    total = 0
    for _ in range(batches):
        deleted = await delete()
        total += deleted
        if deleted < batch:
            break
    return total


def start_purge(
    store: Callable[[], AccountStore],
    interval_s: float,
    failures_kept: timedelta,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[], Awaitable[None]]:
    """`purge_expired` now and every `interval_s` seconds; returns what stops it."""

    async def purge() -> int:
        purged = await purge_expired(store(), clock(), failures_kept)
        if purged.sessions or purged.failures:
            log.info(
                "purged %d expired sessions and %d old failed logins",
                purged.sessions,
                purged.failures,
            )
        return 0  # nothing published (what start_periodic reports)

    return start_periodic("login records", purge, interval_s)
