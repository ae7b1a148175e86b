"""Accounts, logins and the console's reads on the real intake app, FerretDB and NATS.

A session token is an ordinary bearer token with the account's role and agency:
the worklist and the actions take it unchanged; logging out, disabling the
account or resetting its password ends it. Failed logins get one answer for every
cause and are throttled (429 with Retry-After; the API's clock is injected there,
nothing sleeps).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from typer.testing import CliRunner

from lapor.account_store import MongoAccounts, create_account, ensure_admin_account
from lapor.accounts import WRONG_CREDENTIALS
from lapor.contracts import Channel, Deadlines, DeadlinesSet, Priority, State
from services.intake import domain
from services.intake.api import build_router
from services.intake.auth import CHANGE_FIRST
from services.intake.callers import AccountsContext
from services.intake.repository import ComplaintRepository
from services.intake.tracking import new_tracking_id
from services.intake.worklist import WORKLIST_ENTRIES, WORKLIST_MARK, worklist_query
from services.intake.worklist_api import worklist_filters
from tests.factories import complaint_routed
from tests.integration.intake_harness import http_client, serving_intake
from tools.cli import app as cli
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

DB = "lapor_accounts_sessions"
WITA = ZoneInfo("Asia/Makassar")
ADMIN_PASSWORD = "admin-rahasia-" + uuid.uuid4().hex[:8]
T1 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
BANJAR = frozenset({"PUPR", "DINKES", "DISHUB", "DLH", "DISKOMINFO"})
runner = CliRunner()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(own_servers: Stack, own_mongo: Any) -> AsyncIterator[httpx.AsyncClient]:
    await own_mongo.drop_database(DB)
    async with (
        serving_intake(own_servers, DB, http_rate_per_minute=0) as app,
        http_client(app) as client,
    ):
        assert await ensure_admin_account(own_mongo[DB], "admin", ADMIN_PASSWORD)
        # Idempotent: a second start leaves the account as it is.
        assert not await ensure_admin_account(own_mongo[DB], "admin", "another-password")
        yield client


@pytest.fixture
def db(own_mongo: Any) -> Any:
    return own_mongo[DB]


async def _account(
    db: Any, username: str, agency: str | None, role: str = "agency", *, one_time: bool = False
) -> str:
    """A new account's password: its one-time password with `one_time`, otherwise one
    its officer has already chosen (the account no longer waits for a change)."""
    store = MongoAccounts(db)
    _, password = await create_account(
        store,
        username=username,
        name=username.title(),
        role=role,
        agency=agency,
        region="banjar",
        created_by="test",
        now=datetime.now(UTC),
        agencies=BANJAR,
    )
    if not one_time:
        await store.update(username.lower(), {"must_change_password": False})
    return password


async def _login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post("/api/v1/sessions", json={"username": username, "password": password})


async def _session(http: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    answer = await _login(http, username, password)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def _admin(http: httpx.AsyncClient) -> dict[str, str]:
    return await _session(http, "admin", ADMIN_PASSWORD)


async def _complaint(
    db: Any,
    agency: str,
    *,
    text: str = "jalan rusak parah di depan pasar",
    priority: Priority = Priority.NORMAL,
    received_at: datetime | None = None,
    answer_in: timedelta = timedelta(days=10),
    first_in: timedelta = timedelta(days=3),
    triage: bool = False,
) -> str:
    """A complaint routed to `agency`, with deadlines `*_in` from now."""
    repo = ComplaintRepository(db)
    now = datetime.now(UTC)
    received = received_at or now - timedelta(hours=1)
    tracking_id = new_tracking_id()
    doc = domain.new_complaint(
        tracking_id=tracking_id,
        region="banjar",
        channel=Channel.WEB,
        text=text,
        received_at=received,
        source_key=f"test:{tracking_id}",
        phone_hash=None,
        anonymous=False,
        confidential=False,
        truncated=False,
        stored_at=received,
    )
    await repo.add_complaint(doc)
    routed = complaint_routed(
        tracking_id, at=received, received_at=received, agency=agency, priority=priority
    )
    if triage:
        routed = complaint_routed(tracking_id, at=received, received_at=received, triage=True)
    await repo.apply(tracking_id, domain.routed_transition(routed))
    if triage:
        return tracking_id
    event = DeadlinesSet(
        event_id=f"deadlines:{tracking_id}",
        occurred_at=received,
        complaint_id=tracking_id,
        region="banjar",
        agency=agency,
        priority=priority,
        state=State.ASSIGNED,
        received_at=received,
        deadlines=Deadlines(
            routing=received + timedelta(days=1),
            first_response=now + first_in,
            answer=now + answer_in,
        ),
        cause_event_id=f"routed:{tracking_id}:0",
    )
    await repo.apply(tracking_id, domain.deadlines_transition(event))
    return tracking_id


async def _act(
    http: httpx.AsyncClient, headers: dict[str, str], tracking_id: str, action: str, **body: Any
) -> httpx.Response:
    return await http.post(
        f"/api/v1/complaints/{tracking_id}/actions/{action}", json=body, headers=headers
    )


@pytest.mark.security
async def test_a_session_works_on_the_worklist_and_actions_until_logout(
    http: httpx.AsyncClient, db: Any
) -> None:
    password = await _account(db, "budi", "PUPR", one_time=True)
    login = await _login(http, "Budi", password)
    assert login.status_code == 201, login.text
    body = login.json()
    assert body["token"].startswith("lpt_")
    assert body["account"] == body["account"] | {
        "username": "budi",
        "role": "agency",
        "agency": "PUPR",
        "region": "banjar",
        "disabled": False,
        "must_change_password": True,
    }
    assert body["account"]["last_login_at"] is not None and "password_hash" not in login.text
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)
    headers = {"Authorization": f"Bearer {body['token']}"}

    current = await http.get("/api/v1/sessions/current", headers=headers)
    assert current.status_code == 200 and current.json()["username"] == "budi"
    chosen = {"current_password": password, "new_password": "budi-pilihan-123"}
    changed = await http.post("/api/v1/sessions/current/password", json=chosen, headers=headers)
    assert changed.status_code == 204, changed.text

    tracking_id = await _complaint(db, "PUPR")
    listing = await http.get("/api/v1/agencies/PUPR/complaints", headers=headers)
    assert listing.status_code == 200
    assert tracking_id in [item["tracking_id"] for item in listing.json()]

    acknowledged = await _act(http, headers, tracking_id, "acknowledge")
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["state"] == "in_progress"
    # The history names the official by username: what accountability counts.
    assert acknowledged.json()["history"][-1]["actor"] == "agency:budi"

    noted = await _act(http, headers, tracking_id, "note", text="cek lokasi hari Kamis")
    assert noted.status_code == 200, noted.text
    assert noted.json()["state"] == "in_progress"  # a note changes no state
    assert noted.json()["history"][-1]["detail"]["text"] == "cek lokasi hari Kamis"
    public = (await http.get(f"/api/v1/complaints/{tracking_id}")).json()
    assert "cek lokasi" not in str(public)
    assert public["history"][-1]["reason"] == "internal note"
    # The router's reasons: the holding agency's, not the public's.
    assert public["routing"] is None
    assert noted.json()["routing"]["confidence"] == 0.9

    ended = await http.delete("/api/v1/sessions/current", headers=headers)
    assert ended.status_code == 204
    after = await http.get("/api/v1/agencies/PUPR/complaints", headers=headers)
    assert after.status_code == 401 and "revoked" in after.json()["detail"]


@pytest.mark.security
async def test_unknown_users_wrong_passwords_and_disabled_accounts_look_the_same(
    http: httpx.AsyncClient, db: Any
) -> None:
    password = await _account(db, "sari", "PUPR")
    await _account(db, "tono", "PUPR")
    admin = await _admin(http)
    await http.post("/api/v1/accounts/tono/disable", headers=admin)
    answers = [
        await _login(http, "nobody-here", password),
        await _login(http, "sari", password + "x"),
        await _login(http, "tono", password),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [
        (401, {"detail": WRONG_CREDENTIALS})
    ] * 3
    failures = await db.login_failures.find({"username": "sari"}).to_list(None)
    assert failures and all(password not in str(f) for f in failures)
    assert all(f["client"] and "127.0.0.1" not in str(f) for f in failures)
    metrics = (await http.get("/metrics")).text
    assert 'lapor_login_failures_total{reason="wrong_credentials"}' in metrics
    assert "sari" not in metrics and "nobody-here" not in metrics


@pytest.mark.security
async def test_disabling_an_account_ends_its_sessions_and_logins(
    http: httpx.AsyncClient, db: Any
) -> None:
    password = await _account(db, "wati", "DINKES")
    session = await _session(http, "wati", password)
    admin = await _admin(http)
    disabled = await http.post("/api/v1/accounts/wati/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    refused = await http.get("/api/v1/agencies/DINKES/complaints", headers=session)
    assert refused.status_code == 401
    assert (await _login(http, "wati", password)).status_code == 401
    enabled = await http.post("/api/v1/accounts/wati/enable", headers=admin)
    assert enabled.json()["disabled"] is False
    again = await _session(http, "wati", password)
    assert (await http.get("/api/v1/agencies/DINKES/complaints", headers=again)).status_code == 200
    # The old session stays ended.
    assert (await http.get("/api/v1/sessions/current", headers=session)).status_code == 401


@pytest.mark.security
async def test_officers_do_not_administer_accounts_or_tokens(
    http: httpx.AsyncClient, db: Any
) -> None:
    password = await _account(db, "joko", "DLH")
    officer = await _session(http, "joko", password)
    calls = [
        ("GET", "/api/v1/accounts", None),
        ("POST", "/api/v1/accounts", {"username": "evil", "name": "E", "role": "admin"}),
        ("POST", "/api/v1/accounts/admin/disable", None),
        ("POST", "/api/v1/accounts/admin/reset-password", None),
        ("POST", "/api/v1/tokens", {"name": "x", "role": "admin"}),
        ("GET", "/api/v1/overview", None),
    ]
    for method, path, body in calls:
        forbidden = await http.request(method, path, json=body, headers=officer)
        assert forbidden.status_code == 403, (path, forbidden.text)
        anonymous = await http.request(method, path, json=body)
        assert anonymous.status_code == 401, (path, anonymous.text)
    assert await db.accounts.find_one({"_id": "evil"}) is None
    assert (await _login(http, "admin", ADMIN_PASSWORD)).status_code == 201


@pytest.mark.security
async def test_an_officer_reads_only_their_agencys_worklist(
    http: httpx.AsyncClient, db: Any
) -> None:
    password = await _account(db, "dewi", "DINKES")
    officer = await _session(http, "dewi", password)
    tracking_id = await _complaint(db, "PUPR")
    other = await http.get("/api/v1/agencies/PUPR/complaints", headers=officer)
    assert other.status_code == 403
    acted = await _act(http, officer, tracking_id, "acknowledge")
    assert acted.status_code == 403
    noted = await _act(http, officer, tracking_id, "note", text="bukan urusan kami")
    assert noted.status_code == 403


@pytest.mark.security
async def test_a_one_time_password_session_may_only_change_it_log_out_or_read_itself(
    http: httpx.AsyncClient, db: Any
) -> None:
    password = await _account(db, "nina", "PUPR", one_time=True)
    nina = await _session(http, "nina", password)
    tracking_id = await _complaint(db, "PUPR")
    before = await db.complaints.find_one({"_id": tracking_id})
    submission = {"text": "jalan berlubang besar di depan sekolah dasar", "region": "banjar"}
    calls = [
        ("GET", "/api/v1/agencies/PUPR/complaints", None),
        ("GET", f"/api/v1/complaints/{tracking_id}", None),
        ("POST", f"/api/v1/complaints/{tracking_id}/actions/acknowledge", {}),
        ("POST", f"/api/v1/complaints/{tracking_id}/actions/note", {"text": "sudah dicek"}),
        ("POST", "/api/v1/complaints", submission | {"client_id": uuid.uuid4().hex}),
        ("GET", f"/api/v1/complaints/{tracking_id}/photos/ph_0", None),
        ("GET", "/api/v1/accountability", None),
        ("GET", "/api/v1/tokens", None),
    ]
    for method, path, body in calls:
        refused = await http.request(method, path, json=body, headers=nina)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json() == {"detail": CHANGE_FIRST}, path
    assert await db.complaints.find_one({"_id": tracking_id}) == before
    assert not await db.complaints.find_one({"text": submission["text"]})

    # Who am I, and logging out, stay open; the logged-out session is gone.
    current = await http.get("/api/v1/sessions/current", headers=nina)
    assert current.status_code == 200 and current.json()["must_change_password"] is True
    second = await _session(http, "nina", password)
    assert (await http.delete("/api/v1/sessions/current", headers=second)).status_code == 204
    assert (await http.get("/api/v1/sessions/current", headers=second)).status_code == 401

    # Once the password is chosen, the same session acts.
    chosen = {"current_password": password, "new_password": "nina-pilihan-123"}
    changed = await http.post("/api/v1/sessions/current/password", json=chosen, headers=nina)
    assert changed.status_code == 204, changed.text
    acknowledged = await _act(http, nina, tracking_id, "acknowledge")
    assert acknowledged.status_code == 200, acknowledged.text


@pytest.mark.security
async def test_an_admin_with_a_one_time_password_administers_nothing(
    http: httpx.AsyncClient, db: Any
) -> None:
    admin = await _admin(http)
    created = await http.post(
        "/api/v1/accounts",
        json={"username": "admin.baru", "name": "Admin Baru", "role": "admin"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    fresh = await _session(http, "admin.baru", created.json()["password"])
    calls = [
        ("GET", "/api/v1/accounts", None),
        ("POST", "/api/v1/accounts", {"username": "evil2", "name": "E", "role": "admin"}),
        ("POST", "/api/v1/accounts/admin/reset-password", None),
        ("POST", "/api/v1/tokens", {"name": "x", "role": "admin"}),
        ("GET", "/api/v1/triage", None),
        ("GET", "/api/v1/overview", None),
    ]
    for method, path, body in calls:
        refused = await http.request(method, path, json=body, headers=fresh)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json() == {"detail": CHANGE_FIRST}, path
    assert await db.accounts.find_one({"_id": "evil2"}) is None
    assert await db.api_tokens.count_documents({"name": "x"}) == 0
    assert (await _login(http, "admin", ADMIN_PASSWORD)).status_code == 201


async def test_changing_the_password_ends_the_other_sessions(
    http: httpx.AsyncClient, db: Any
) -> None:
    password = await _account(db, "rudi", "PUPR", one_time=True)
    other = await _session(http, "rudi", password)
    this = await _session(http, "rudi", password)
    change = "/api/v1/sessions/current/password"
    wrong = await http.post(
        change, json={"current_password": "nope", "new_password": "baru-1234567"}, headers=this
    )
    assert wrong.status_code == 403
    short = await http.post(
        change, json={"current_password": password, "new_password": "pendek"}, headers=this
    )
    assert short.status_code == 422
    changed = await http.post(
        change,
        json={"current_password": password, "new_password": "baru-1234567"},
        headers=this,
    )
    assert changed.status_code == 204
    assert (await http.get("/api/v1/sessions/current", headers=other)).status_code == 401
    current = await http.get("/api/v1/sessions/current", headers=this)
    assert current.status_code == 200 and current.json()["must_change_password"] is False
    # The session that chose the password goes on working.
    assert (await http.get("/api/v1/agencies/PUPR/complaints", headers=this)).status_code == 200
    assert (await _login(http, "rudi", password)).status_code == 401
    assert (await _login(http, "rudi", "baru-1234567")).status_code == 201


async def test_admins_create_list_reset_accounts_and_create_tokens(
    http: httpx.AsyncClient, db: Any
) -> None:
    admin = await _admin(http)
    created = await http.post(
        "/api/v1/accounts",
        json={"username": "Ani.P", "name": "Ani Putri", "role": "agency", "agency": "PUPR"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    first = created.json()["password"]
    assert created.json()["account"]["username"] == "ani.p"
    assert created.json()["account"]["must_change_password"] is True
    stored = await db.accounts.find_one({"_id": "ani.p"})
    assert first not in str(stored) and stored["created_by"] == "admin"
    taken = await http.post(
        "/api/v1/accounts",
        json={"username": "ani.p", "name": "Ani", "role": "agency", "agency": "PUPR"},
        headers=admin,
    )
    assert taken.status_code == 409
    for bad in ({"agency": "NOPE"}, {"agency": None}, {"role": "boss"}):
        refused = await http.post(
            "/api/v1/accounts",
            json={"username": "ani2", "name": "Ani", "role": "agency", "agency": "PUPR"} | bad,
            headers=admin,
        )
        assert refused.status_code == 422, bad
    listed = (await http.get("/api/v1/accounts", headers=admin)).json()
    names = [a["username"] for a in listed]
    assert names == sorted(names) and "ani.p" in names
    assert all("argon2" not in str(a) and "password_hash" not in a for a in listed)

    session = await _session(http, "ani.p", first)
    reset = await http.post("/api/v1/accounts/ani.p/reset-password", headers=admin)
    assert reset.status_code == 200
    assert (await http.get("/api/v1/sessions/current", headers=session)).status_code == 401
    assert (await _login(http, "ani.p", first)).status_code == 401
    assert (await _login(http, "ani.p", reset.json()["password"])).status_code == 201
    missing = await http.post("/api/v1/accounts/nobody/disable", headers=admin)
    assert missing.status_code == 404
    itself = await http.post("/api/v1/accounts/admin/disable", headers=admin)
    assert itself.status_code == 409

    token = await http.post(
        "/api/v1/tokens",
        json={"name": "pupr-bot", "role": "agency", "agency": "PUPR"},
        headers=admin,
    )
    assert token.status_code == 201, token.text
    assert token.json()["view"]["status"] == "active" and token.json()["view"]["agency"] == "PUPR"
    machine = {"Authorization": f"Bearer {token.json()['token']}"}
    assert (await http.get("/api/v1/agencies/PUPR/complaints", headers=machine)).status_code == 200
    no_account = await http.get("/api/v1/sessions/current", headers=machine)
    assert no_account.status_code == 404
    unknown = await http.post(
        "/api/v1/tokens", json={"name": "x", "role": "agency", "agency": "NOPE"}, headers=admin
    )
    assert unknown.status_code == 422
    # Sessions are listed with the accounts, not among the machines' tokens.
    tokens = (await http.get("/api/v1/tokens", headers=admin)).json()
    assert [t["name"] for t in tokens] == ["pupr-bot"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.security
async def test_repeated_failures_are_throttled_with_retry_after(own_mongo: Any) -> None:
    database = own_mongo["lapor_login_throttle"]
    await own_mongo.drop_database("lapor_login_throttle")
    store = MongoAccounts(database)
    await store.ensure_indexes()
    password = await _account(database, "budi", "PUPR")
    clock = Clock()

    async def unused(*_args: Any) -> Any:
        raise AssertionError("not called")

    app = FastAPI()
    app.include_router(
        build_router(
            lambda: ComplaintRepository(database),
            {"banjar": WITA},
            unused,
            unused,
            b"s" * 32,
            clock=clock,
            accounts=AccountsContext(store=lambda: store, agencies={"banjar": BANJAR}),
        )
    )
    async with http_client(app) as client:
        for _ in range(5):
            wrong = await _login(client, "budi", "wrong-password")
            assert wrong.status_code == 401
            clock.now += timedelta(minutes=1)
        # The sixth try, with the right password: not even looked at.
        throttled = await _login(client, "budi", password)
        assert throttled.status_code == 429
        assert int(throttled.headers["Retry-After"]) == 10 * 60
        assert "try again" in throttled.json()["detail"]
        clock.now += timedelta(minutes=10) - timedelta(seconds=1)
        assert (await _login(client, "budi", password)).status_code == 429
        clock.now += timedelta(seconds=1)
        assert (await _login(client, "budi", password)).status_code == 201
        # Twenty failures from one address within the window (four of budi's are still
        # in it) throttle every username from there.
        for i in range(16):
            assert (await _login(client, f"guess{i}", "x" * 10)).status_code == 401
        assert (await _login(client, "budi", password)).status_code == 429
    assert await database.login_failures.count_documents({}) == 21


async def test_worklist_search_paging_overdue_and_total(http: httpx.AsyncClient, db: Any) -> None:
    password = await _account(db, "hadi", "DISHUB")
    officer = await _session(http, "hadi", password)
    late = await _complaint(
        db,
        "DISHUB",
        text="Lampu PJU mati total di Jalan A. Yani km 5",
        answer_in=-timedelta(hours=2),
    )
    urgent = await _complaint(
        db, "DISHUB", text="lampu lalu lintas padam, hampir tabrakan", priority=Priority.URGENT
    )
    others = [
        await _complaint(db, "DISHUB", text=f"parkir liar nomor {i} (pasar) lampu")
        for i in range(4)
    ]
    url = "/api/v1/agencies/DISHUB/complaints"

    everything = await http.get(url, headers=officer)
    assert everything.headers["X-Total-Count"] == "6"
    items = everything.json()
    assert items[0]["tracking_id"] == urgent  # urgent first
    assert items[1]["tracking_id"] == late  # then the nearest (passed) deadline
    assert items[1]["overdue"] is True and items[0]["overdue"] is False
    assert all(i["agency"] == "DISHUB" for i in items)

    page = await http.get(url, params={"limit": 2, "offset": 2}, headers=officer)
    assert page.headers["X-Total-Count"] == "6"
    assert [i["tracking_id"] for i in page.json()] == [i["tracking_id"] for i in items[2:4]]

    overdue = await http.get(url, params={"overdue": "true"}, headers=officer)
    assert [i["tracking_id"] for i in overdue.json()] == [late]
    assert overdue.headers["X-Total-Count"] == "1"
    not_overdue = await http.get(url, params={"overdue": "false"}, headers=officer)
    assert not_overdue.headers["X-Total-Count"] == "5"

    by_id = await http.get(url, params={"q": late.lower()}, headers=officer)
    assert [i["tracking_id"] for i in by_id.json()] == [late]
    words = await http.get(url, params={"q": "LAMPU  mati"}, headers=officer)
    assert [i["tracking_id"] for i in words.json()] == [late]
    lamps = await http.get(url, params={"q": "lampu"}, headers=officer)
    assert lamps.headers["X-Total-Count"] == "6"
    # Words are text, never patterns.
    for q in ("(pasar)", ".*", "a.yani"):
        found = await http.get(url, params={"q": q}, headers=officer)
        assert found.status_code == 200
    assert (await http.get(url, params={"q": "(pasar)"}, headers=officer)).headers[
        "X-Total-Count"
    ] == str(len(others))
    assert (await http.get(url, params={"q": ".*"}, headers=officer)).headers[
        "X-Total-Count"
    ] == "0"
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
        assert (await http.get(url, params=bad, headers=officer)).status_code == 422


async def test_overview_and_accountability_numbers(http: httpx.AsyncClient, db: Any) -> None:
    password = await _account(db, "eko", "DISKOMINFO")
    eko = await _session(http, "eko", password)
    admin = await _admin(http)
    received = datetime.now(UTC) - timedelta(hours=2)
    on_time = await _complaint(db, "DISKOMINFO", received_at=received)
    breached = await _complaint(
        db, "DISKOMINFO", received_at=received, answer_in=-timedelta(hours=1)
    )
    late = await _complaint(db, "DISKOMINFO", received_at=received, answer_in=-timedelta(hours=1))
    asked = await _complaint(db, "DISKOMINFO", received_at=received)
    await _complaint(db, "DISKOMINFO", received_at=received, priority=Priority.URGENT)
    await _complaint(db, "DISKOMINFO", received_at=received, triage=True)
    for tracking_id in (on_time, breached, late, asked):
        assert (await _act(http, eko, tracking_id, "acknowledge")).status_code == 200
    for tracking_id in (on_time, late):
        answered = await _act(
            http, eko, tracking_id, "answer", text="sudah diperbaiki", outcome="resolved"
        )
        assert answered.status_code == 200, answered.text
    assert (await _act(http, eko, asked, "ask", text="di RT berapa?")).status_code == 200

    overview = await http.get("/api/v1/overview", headers=admin)
    assert overview.status_code == 200, overview.text
    rows = {row["agency"]: row for row in overview.json()["agencies"]}
    assert rows["DISKOMINFO"] == {
        "agency": "DISKOMINFO",
        "open": 5,
        "overdue": 1,  # the unanswered one; the late one is answered
        "urgent_unacknowledged": 1,
        "awaiting_citizen": 1,
    }
    assert overview.json()["triage"] == await db.complaints.count_documents({"state": "triage"})
    assert overview.json()["triage"] >= 1

    month = received.astimezone(WITA).strftime("%Y-%m")
    report = await http.get("/api/v1/accountability", params={"month": month}, headers=admin)
    assert report.status_code == 200, report.text
    agencies = {a["agency"]: a for a in report.json()["agencies"]}
    total = agencies["DISKOMINFO"]["total"]
    assert total | {"median_hours_to_answer": None} == {
        "official": None,
        "received": 5,
        "acknowledged": 4,
        "asked": 0,
        "answered": 2,
        "answered_on_time": 1,
        "answered_late": 1,
        "median_hours_to_answer": None,
        "open_breaches": 1,
        "forwarded": 0,
    }
    assert 1.9 <= total["median_hours_to_answer"] <= 2.2
    (official,) = agencies["DISKOMINFO"]["officials"]
    assert official | {"median_hours_to_answer": None} == {
        "official": "eko",
        "received": 4,
        "acknowledged": 4,
        "asked": 1,
        "answered": 2,
        "answered_on_time": 1,
        "answered_late": 1,
        "median_hours_to_answer": None,
        "open_breaches": 1,
        "forwarded": 0,
    }
    assert "PUPR" in agencies  # the admin sees every agency
    own = await http.get("/api/v1/accountability", params={"month": month}, headers=eko)
    assert [a["agency"] for a in own.json()["agencies"]] == ["DISKOMINFO"]
    bad = await http.get("/api/v1/accountability", params={"month": "2026-13"}, headers=admin)
    assert bad.status_code == 422


def _lapor(servers: Stack, *args: str) -> str:
    result = runner.invoke(cli, [*args, "--mongo", servers.mongo, "--db", DB])
    assert result.exit_code == 0, result.output
    return result.output


async def test_the_command_line_manages_accounts(
    own_servers: Stack, http: httpx.AsyncClient
) -> None:
    output = await asyncio.to_thread(
        _lapor, own_servers, "accounts", "create", "lina", "--name", "Lina", "--agency", "DLH"
    )
    password = output.strip().splitlines()[-1]
    assert (await _login(http, "lina", password)).status_code == 201
    listed = await asyncio.to_thread(_lapor, own_servers, "accounts", "list", "--json")
    assert '"lina"' in listed and password not in listed and "argon2" not in listed
    await asyncio.to_thread(_lapor, own_servers, "accounts", "disable", "lina")
    assert (await _login(http, "lina", password)).status_code == 401
    await asyncio.to_thread(_lapor, own_servers, "accounts", "enable", "lina")
    reset_output = await asyncio.to_thread(
        _lapor, own_servers, "accounts", "reset-password", "lina"
    )
    reset = reset_output.strip().splitlines()[-1]
    assert (await _login(http, "lina", reset)).status_code == 201
    bad = await asyncio.to_thread(
        runner.invoke,
        cli,
        [
            *("accounts", "create", "x1x", "--name", "X", "--agency", "NOPE"),
            *("--mongo", own_servers.mongo, "--db", DB),
        ],
    )
    assert bad.exit_code == 1 and "unknown agency" in bad.output


async def test_the_worklist_and_overview_read_open_complaints_through_an_index(
    own_mongo: Any,
) -> None:
    """`USING INDEX ..._open_agency_1_...` in the SQLite plan of our FerretDB build: an
    agency's open worklist reads small entries by agency, never its closed complaints;
    complaints loaded in bulk (or left by a crash) are listed by the sweep."""
    name = "lapor_worklist_plan"
    await own_mongo.drop_database(name)
    database = own_mongo[name]
    repo = ComplaintRepository(database)
    await repo.ensure_indexes()
    query = worklist_query("PUPR", ["assigned", "in_progress"], worklist_filters("lampu", True, T1))
    for command in (
        {"find": WORKLIST_ENTRIES, "filter": query, "sort": {"priority_rank": 1}},
        {
            "aggregate": WORKLIST_ENTRIES,
            "pipeline": [{"$match": {"open_agency": "PUPR", "region": "banjar"}}, {"$count": "n"}],
            "cursor": {},
        },
        {"find": "complaints", "filter": {WORKLIST_MARK: "pending"}},
    ):
        explained = await database.command("explain", command)
        plan = " ".join(explained["queryPlanner"]["Plan"])
        assert "USING INDEX" in plan and "SCAN" not in plan, plan
    # A list of states beyond the open ones reads the complaints by agency instead.
    assert "open_agency" not in worklist_query("PUPR", ["closed", "assigned"])

    # Loaded in bulk with the stored worklist fields: listed by the sweep.
    loaded = []
    for i in range(3):
        doc = domain.new_complaint(
            tracking_id=new_tracking_id(),
            region="banjar",
            channel=Channel.WEB,
            text=f"lampu jalan mati {i}",
            received_at=T1,
            source_key=f"bulk:{i}",
            phone_hash=None,
            anonymous=False,
            confidential=False,
            truncated=False,
            stored_at=T1,
        )
        doc |= {"state": "assigned", "agency": "PUPR", "priority_rank": 2}
        doc |= domain.worklist_fields(doc)
        loaded.append(doc)
    await database.complaints.insert_many(loaded)
    assert await repo.count_worklist("PUPR", ["assigned"]) == 0
    assert await repo.sync_worklist() == 3
    assert await repo.count_worklist("PUPR", ["assigned"]) == 3
    assert await repo.sync_worklist() == 0  # the marks are cleared
    await own_mongo.drop_database(name)
