from datetime import UTC, datetime, timedelta

import pytest

from lapor.contracts.commands import Role
from lapor.tokens import CHANGE_FIRST_DOC
from services.intake.auth import (
    DEFAULT_TOKEN_DAYS,
    Principal,
    citizen_key,
    citizen_principal,
    hash_token,
    needs_last_use,
    new_token,
    session_record,
    token_expiry,
    token_record,
    token_refusal,
    token_status,
    token_view,
)
from services.intake.wiring import openapi_document

SECRET = b"k" * 32


def test_a_citizen_key_opens_its_own_complaint_only() -> None:
    key = citizen_key("LPR-2611-ABCD2345", SECRET)
    reporter = citizen_principal("LPR-2611-ABCD2345", key, SECRET)
    assert reporter is not None and reporter.role is Role.CITIZEN
    assert reporter.actor().id == "web:LPR-2611-ABCD2345"
    assert citizen_principal("LPR-2611-ZZZZ2345", key, SECRET) is None
    assert citizen_principal("LPR-2611-ABCD2345", key, b"x" * 32) is None
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert citizen_principal("LPR-2611-ABCD2345", tampered, SECRET) is None


def test_the_key_is_stable_and_unguessable_from_the_id() -> None:
    first = citizen_key("LPR-2611-ABCD2345", SECRET)
    assert first == citizen_key("LPR-2611-ABCD2345", SECRET)
    assert first != citizen_key("LPR-2611-ABCD2346", SECRET)
    assert first.startswith("lpc_") and len(first) == 4 + 32
    assert "ABCD2345" not in first


def test_confidential_complaints_stay_in_their_circle() -> None:
    confidential = {"_id": "LPR-1", "confidential": True, "agency": "DINKES"}
    assert Principal(Role.CITIZEN, "web:LPR-1", complaint="LPR-1").may_see(confidential)
    assert not Principal(Role.CITIZEN, "web:LPR-2", complaint="LPR-2").may_see(confidential)
    assert Principal(Role.AGENCY, "x", agency="DINKES").may_see(confidential)
    assert not Principal(Role.AGENCY, "x", agency="PUPR").may_see(confidential)
    assert Principal(Role.ADMIN, "admin").may_see(confidential)
    assert not Principal(Role.PARTNER, "app").may_see(confidential)


# --- citizen links under a key of their own, old keys verify only -------------------

OLD = b"o" * 32


def test_an_old_link_key_still_opens_its_links_but_signs_no_new_ones() -> None:
    old_link = citizen_key("LPR-2611-ABCD2345", OLD)
    assert citizen_principal("LPR-2611-ABCD2345", old_link, SECRET) is None
    assert citizen_principal("LPR-2611-ABCD2345", old_link, SECRET, (OLD,)) is not None
    assert citizen_key("LPR-2611-ABCD2345", SECRET) != old_link


# --- API tokens: expiry, revocation, last use ----------------------------------------

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_token_expires_after_90_days_by_default() -> None:
    record = token_record(new_token(), Role.AGENCY, "budi", "PUPR", now=NOW)
    assert record["expires_at"] == NOW + timedelta(days=DEFAULT_TOKEN_DAYS) == NOW + timedelta(90)
    assert record["id"].startswith("tok_") and record["last_used_at"] is None
    assert token_refusal(record, NOW + timedelta(days=89, hours=23)) is None
    refusal = token_refusal(record, NOW + timedelta(days=90))
    assert refusal is not None and refusal.startswith("token expired on 2027-03-01")


def test_the_lifetime_is_chosen_within_limits() -> None:
    record = token_record(new_token(), Role.ADMIN, "rina", None, days=7, now=NOW)
    assert token_status(record, NOW + timedelta(days=7)) == "expired"
    for days in (0, -1, 366):
        with pytest.raises(ValueError, match="1 to 365 days"):
            token_record(new_token(), Role.ADMIN, "rina", None, days=days)


def test_a_revoked_token_is_refused() -> None:
    record = token_record(new_token(), Role.PARTNER, "app", None, now=NOW) | {"revoked_at": NOW}
    assert token_status(record, NOW) == "revoked"
    assert token_refusal(record, NOW) == "token revoked; ask an admin for a new one"


def test_a_token_from_before_expiries_expires_90_days_after_its_creation() -> None:
    legacy = {"_id": "h", "role": "agency", "name": "x", "agency": "PUPR", "created_at": NOW}
    assert token_expiry(legacy) == NOW + timedelta(days=90)
    assert token_refusal(legacy, NOW + timedelta(days=89)) is None
    assert token_status(legacy, NOW + timedelta(days=90)) == "expired"
    # Stored without a time zone (a client without tz_aware): UTC.
    naive = legacy | {"created_at": NOW.replace(tzinfo=None)}
    assert token_expiry(naive) == NOW + timedelta(days=90)
    # Without even a creation time, nothing says it is young: expired.
    assert token_status({"role": "admin", "name": "x"}, NOW) == "expired"


def test_the_last_use_is_written_at_most_once_a_minute() -> None:
    record = token_record(new_token(), Role.ADMIN, "rina", None, now=NOW)
    assert needs_last_use(record, NOW)
    used = record | {"last_used_at": NOW}
    assert not needs_last_use(used, NOW + timedelta(seconds=59))
    assert needs_last_use(used, NOW + timedelta(seconds=60))


def test_a_token_view_holds_neither_the_secret_nor_its_hash() -> None:
    token = new_token()
    record = token_record(token, Role.AGENCY, "budi", "PUPR", now=NOW)
    view = token_view(record, NOW)
    assert set(view) == {
        "id",
        "name",
        "role",
        "agency",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "status",
    }
    shown = repr(view)
    assert token not in shown and hash_token(token) not in shown and token[4:12] not in shown
    assert view["status"] == "active" and view["id"] == record["id"]


def test_a_login_session_carries_its_accounts_pending_password_change() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    account = {"_id": "budi", "name": "Budi", "role": "agency", "agency": "PUPR"}
    pending = session_record(
        new_token(), account | {"must_change_password": True}, hours=12, now=now
    )
    settled = session_record(new_token(), account, hours=12, now=now)
    assert pending["must_change_password"] is True
    assert settled["must_change_password"] is False


def test_the_openapi_document_names_the_password_first_refusal_where_it_applies() -> None:
    document = openapi_document()
    open_to_pending = {
        ("post", "/api/v1/sessions"),  # logging in: no session yet
        ("get", "/api/v1/sessions/current"),
        ("delete", "/api/v1/sessions/current"),
        ("post", "/api/v1/sessions/current/password"),
    }
    # A partner's form names its key in a field, not a header: an admin's session refused there too.
    by_api_key = {("post", "/open311/v2/requests.{fmt}")}
    gated = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            described = answers.get("403", {}).get("description", "")
            if (method, path) in open_to_pending or (
                "401" not in answers and (method, path) not in by_api_key
            ):
                assert CHANGE_FIRST_DOC not in described, (method, path)
                continue
            assert CHANGE_FIRST_DOC in described.lower(), (method, path)
            gated.append((method, path))
    assert ("post", "/api/v1/complaints/{tracking_id}/actions/{action}") in gated
    assert ("post", "/api/v1/accounts") in gated and len(gated) >= 15
    assert by_api_key <= set(gated)
