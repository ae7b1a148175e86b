"""Accounts and logins without a database: the rules of `lapor.accounts`, the use cases
of `lapor.account_store` and `services.intake.sessions` over the in-memory store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.account_store import (
    InMemoryAccounts,
    create_account,
    reset_password,
    set_disabled,
)
from lapor.accounts import (
    WRONG_CREDENTIALS,
    AccountError,
    account_view,
    check_password,
    check_role,
    check_username,
    client_digest,
    hash_password,
    new_password,
    retry_after_seconds,
    throttled_until,
    verify_password,
)
from services.intake.sessions import LoginRefused, change_password, login, purge_expired

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
AGENCIES = frozenset({"PUPR", "DINKES"})


def test_usernames_are_lowercase_and_bounded() -> None:
    assert check_username("  Budi.S_1 ") == "budi.s_1"
    for bad in ("ab", "x" * 33, "budi santoso", "budi@pupr", "büdi", ""):
        with pytest.raises(AccountError):
            check_username(bad)


def test_passwords_have_ten_characters_and_are_hashed_with_argon2id() -> None:
    with pytest.raises(AccountError):
        check_password("123456789")
    assert check_password("1234567890") == "1234567890"
    stored = hash_password("rahasia-sekali")
    assert stored.startswith("$argon2id$") and "rahasia" not in stored
    assert verify_password(stored, "rahasia-sekali")
    assert not verify_password(stored, "rahasia-sekalI")
    assert not verify_password(None, "rahasia-sekali")  # unknown user: the same work, False
    assert not verify_password("not a hash", "rahasia-sekali")


def test_generated_passwords_are_random_and_long_enough() -> None:
    passwords = {new_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) >= 16 for p in passwords)


def test_roles_and_agencies() -> None:
    assert check_role("agency", "PUPR", AGENCIES) == "PUPR"
    assert check_role("admin", None, AGENCIES) is None
    for role, agency in (("agency", None), ("agency", "NOPE"), ("admin", "PUPR"), ("boss", None)):
        with pytest.raises(AccountError):
            check_role(role, agency, AGENCIES)


def test_throttling_is_a_sliding_window() -> None:
    window = timedelta(minutes=15)
    times = [T0 + timedelta(minutes=m) for m in (0, 1, 2, 3)]
    assert throttled_until(times, 5, T0 + timedelta(minutes=4)) is None
    times.append(T0 + timedelta(minutes=4))
    # The fifth failure: refused until the oldest of the five leaves the window.
    assert throttled_until(times, 5, T0 + timedelta(minutes=4)) == T0 + window
    assert throttled_until(times, 5, T0 + window) is None
    assert retry_after_seconds(T0 + window, T0 + timedelta(minutes=4)) == 11 * 60
    assert retry_after_seconds(T0, T0 + timedelta(seconds=3)) == 1


def test_client_addresses_are_stored_as_keyed_hashes() -> None:
    digest = client_digest(b"k" * 32, "203.0.113.9")
    assert digest and "203" not in digest
    assert digest != client_digest(b"j" * 32, "203.0.113.9")
    assert client_digest(b"k" * 32, None) is None


def _create(store: InMemoryAccounts, username: str = "budi", **kw: Any) -> tuple[dict, str]:
    values = {
        "username": username,
        "name": "Budi Santoso",
        "role": "agency",
        "agency": "PUPR",
        "region": "banjar",
        "created_by": "rina",
        "now": T0,
        "agencies": AGENCIES,
    } | kw
    return asyncio.run(create_account(store, **values))


def test_a_new_account_has_a_one_time_password_never_stored_in_clear() -> None:
    store = InMemoryAccounts()
    doc, password = _create(store)
    stored = store.accounts["budi"]
    assert password not in str(stored) and verify_password(stored["password_hash"], password)
    assert stored["must_change_password"] is True
    view = account_view(doc)
    assert "password_hash" not in view and view["disabled"] is False
    with pytest.raises(AccountError) as taken:
        _create(store, username="BUDI")
    assert taken.value.status == 409


def _login(store: InMemoryAccounts, username: str, password: str, at: datetime, **kw: Any) -> Any:
    return asyncio.run(login(store, username, password, client="c1", now=at, hours=12, **kw))


def test_login_gives_a_session_of_the_account() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    session = _login(store, "Budi", password, T0)
    assert session.token.startswith("lpt_")
    record = session.record
    assert record["kind"] == "session" and record["account"] == "budi"
    assert record["role"] == "agency" and record["agency"] == "PUPR"
    assert record["expires_at"] == T0 + timedelta(hours=12)
    assert session.token not in str(record)
    assert store.accounts["budi"]["last_login_at"] == T0


def test_unknown_user_wrong_password_and_disabled_get_one_answer() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    _create(store, username="sari")
    asyncio.run(set_disabled(store, "sari", True, T0))
    answers = []
    for username, secret in (("nobody", password), ("budi", "salah-salah"), ("sari", password)):
        with pytest.raises(LoginRefused) as refused:
            _login(store, username, secret, T0)
        answers.append((refused.value.status, refused.value.message))
    assert answers == [(401, WRONG_CREDENTIALS)] * 3
    assert all("password" not in f and f["client"] == "c1" for f in store.failures)


def test_five_failures_throttle_the_username_and_a_success_clears_it() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    counted: list[str] = []
    for minute in range(5):
        with pytest.raises(LoginRefused):
            _login(
                store,
                "budi",
                "wrong-password",
                T0 + timedelta(minutes=minute),
                count=counted.append,
            )
    with pytest.raises(LoginRefused) as throttled:
        # Even the right password is not looked at.
        _login(store, "budi", password, T0 + timedelta(minutes=5), count=counted.append)
    assert throttled.value.status == 429 and throttled.value.retry_after == 10 * 60
    assert counted == ["wrong_credentials"] * 5 + ["throttled"]
    assert len(store.failures) == 5  # throttled attempts are counted, not stored
    # The window moves past the first failure: one more try is allowed, and succeeds.
    _login(store, "budi", password, T0 + timedelta(minutes=15))
    # The success cleared the count: four new failures do not throttle.
    for minute in range(16, 20):
        with pytest.raises(LoginRefused) as wrong:
            _login(store, "budi", "wrong-password", T0 + timedelta(minutes=minute))
        assert wrong.value.status == 401


def test_twenty_failures_from_one_address_throttle_every_username() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    for i in range(20):
        with pytest.raises(LoginRefused):
            _login(store, f"user{i}", "wrong-password", T0)
    with pytest.raises(LoginRefused) as throttled:
        _login(store, "budi", password, T0 + timedelta(minutes=1))
    assert throttled.value.status == 429
    session = asyncio.run(
        login(store, "budi", password, client="c2", now=T0 + timedelta(minutes=1), hours=12)
    )
    assert session.account["_id"] == "budi"


def test_disable_and_reset_end_every_session() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    _login(store, "budi", password, T0)
    _login(store, "budi", password, T0)
    asyncio.run(set_disabled(store, "budi", True, T0))
    assert all(s["revoked_at"] == T0 for s in store.sessions)
    asyncio.run(set_disabled(store, "budi", False, T0))
    _login(store, "budi", password, T0)
    doc, new = asyncio.run(reset_password(store, "budi", T0))
    assert all(s["revoked_at"] is not None for s in store.sessions)
    assert doc["must_change_password"] and verify_password(doc["password_hash"], new)
    with pytest.raises(AccountError) as missing:
        asyncio.run(reset_password(store, "nobody", T0))
    assert missing.value.status == 404


def test_changing_the_password_keeps_only_this_session() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    other = _login(store, "budi", password, T0)
    this = _login(store, "budi", password, T0)
    with pytest.raises(AccountError) as wrong:
        asyncio.run(
            change_password(
                store, "budi", "not-it-at-all", "baru-sekali-123", keep_token_id=None, now=T0
            )
        )
    assert wrong.value.status == 403
    with pytest.raises(AccountError):
        asyncio.run(change_password(store, "budi", password, "pendek", keep_token_id=None, now=T0))
    doc = asyncio.run(
        change_password(
            store, "budi", password, "baru-sekali-123", keep_token_id=this.record["id"], now=T0
        )
    )
    assert doc["must_change_password"] is False
    revoked = {s["id"]: s["revoked_at"] for s in store.sessions}
    assert revoked[other.record["id"]] == T0 and revoked[this.record["id"]] is None
    # The session opened with the one-time password waited for this change; no longer.
    assert this.record["must_change_password"] is True
    pending = {s["id"]: s["must_change_password"] for s in store.sessions}
    assert pending[this.record["id"]] is False and pending[other.record["id"]] is True
    later = _login(store, "budi", "baru-sekali-123", T0)
    assert later.record["must_change_password"] is False


def test_the_purge_keeps_what_still_counts() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    _login(store, "budi", password, T0 - timedelta(days=1))
    alive = _login(store, "budi", password, T0)
    for age in (timedelta(days=40), timedelta(days=31), timedelta(minutes=5)):
        asyncio.run(store.add_failure({"username": "budi", "at": T0 - age}))
    purged = asyncio.run(purge_expired(store, T0, timedelta(days=30), batch=1, batches=5))
    assert (purged.sessions, purged.failures) == (1, 2)
    assert [s["id"] for s in store.sessions] == [alive.record["id"]]
    assert [f["at"] for f in store.failures] == [T0 - timedelta(minutes=5)]


def test_a_login_racing_with_a_disable_does_not_survive_it() -> None:
    store = InMemoryAccounts()
    _, password = _create(store)
    original = store.update

    async def disabled_meanwhile(username: str, fields: dict[str, Any]) -> Any:
        # The admin disables the account between the password check and the session.
        if "last_login_at" in fields:
            await set_disabled(store, username, True, T0)
        return await original(username, fields)

    store.update = disabled_meanwhile  # type: ignore[method-assign]
    with pytest.raises(LoginRefused) as refused:
        _login(store, "budi", password, T0)
    assert refused.value.status == 401
    assert all(s["revoked_at"] is not None for s in store.sessions)
