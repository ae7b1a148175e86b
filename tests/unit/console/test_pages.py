"""The console's pages against the in-memory services: sessions, CSRF, refusals."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from services.console.in_memory import FakeAccount, InMemoryServices
from services.console.security import PRESESSION_COOKIE, SESSION_COOKIE, Keys, Session
from services.console.settings import ConsoleSettings
from services.console.web import safe_next
from services.console.wiring import create_app

NOW = datetime.now(UTC)


def complaint(tracking_id: str, agency: str, **fields: object) -> dict[str, object]:
    return {
        "tracking_id": tracking_id,
        "region": "banjar",
        "channel": "sms",
        "state": "assigned",
        "agency": agency,
        "priority": "normal",
        "category": "jalan",
        "received_at": (NOW - timedelta(days=1)).isoformat(),
        "deadlines": {"answer": (NOW + timedelta(days=10)).isoformat()},
        "next_deadline": (NOW + timedelta(days=3)).isoformat(),
        "text": "jalan rusak di depan pasar",
        "anonymous": False,
        "reporter_name": "Siti",
        "history": [],
        **fields,
    }


@pytest.fixture
def services() -> InMemoryServices:
    fake = InMemoryServices()
    fake.add_account(FakeAccount("budi", "sandi-budi-123", "Budi", "agency", "PUPR"))
    fake.add_account(FakeAccount("rina", "sandi-rina-123", "Rina", "agency", "DINKES"))
    fake.add_account(FakeAccount("admin", "sandi-admin-123", "Admin", "admin"))
    fake.complaints["LPR-1"] = complaint("LPR-1", "PUPR")
    fake.complaints["LPR-2"] = complaint(
        "LPR-2",
        "PUPR",
        priority="urgent",
        next_deadline=(NOW + timedelta(hours=5, minutes=30)).isoformat(),
    )
    fake.complaints["LPR-3"] = complaint(
        "LPR-3", "PUPR", overdue=True, next_deadline=(NOW - timedelta(hours=2)).isoformat()
    )
    return fake


@pytest.fixture
def cookie_key() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def client(
    services: InMemoryServices, cookie_key: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("LAPOR_ENV", "production")
    settings = ConsoleSettings(cookie_key=cookie_key)  # type: ignore[arg-type]
    app = create_app(settings, services=services, registry=CollectorRegistry())
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the form carries a CSRF token"
    return found.group(1)


def command_id_of(html: str, action: str) -> str:
    form = html.split(f'/{action}"', 1)[1]
    found = re.search(r'name="command_id" value="([^"]+)"', form)
    assert found
    return found.group(1)


def log_in(client: TestClient, username: str, password: str) -> None:
    page = client.get("/masuk")
    answer = client.post(
        "/masuk",
        data={"username": username, "password": password, "csrf": csrf_of(page.text)},
    )
    assert answer.status_code == 303, answer.text


def test_login_sets_a_sealed_httponly_samesite_secure_cookie(
    client: TestClient, services: InMemoryServices, cookie_key: str
) -> None:
    page = client.get("/masuk")
    assert page.status_code == 200 and 'lang="id"' in page.text
    assert "HttpOnly" in page.headers["set-cookie"]  # the pre-session cookie
    answer = client.post(
        "/masuk",
        data={"username": "budi", "password": "sandi-budi-123", "csrf": csrf_of(page.text)},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    set_cookie = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE)
    )
    flags = set_cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" in flags
    assert "path=/" in flags and "max-age=" in flags
    (token,) = services.sessions
    value = client.cookies[SESSION_COOKIE]
    assert token not in value, "the bearer token is not readable in the cookie"
    opened = Keys(cookie_key).open(value)
    assert opened is not None and opened.token == token and opened.agency == "PUPR"
    assert Keys(secrets.token_urlsafe(32)).open(value) is None, "another key cannot open it"


def test_wrong_password_is_refused_without_a_session(client: TestClient) -> None:
    page = client.get("/masuk")
    answer = client.post(
        "/masuk", data={"username": "budi", "password": "salah", "csrf": csrf_of(page.text)}
    )
    assert answer.status_code == 401
    assert "Nama pengguna atau kata sandi salah" in answer.text
    assert SESSION_COOKIE not in client.cookies


@pytest.mark.security
def test_login_without_its_presession_token_is_refused(
    client: TestClient, services: InMemoryServices
) -> None:
    client.get("/masuk")
    answer = client.post("/masuk", data={"username": "budi", "password": "sandi-budi-123"})
    assert answer.status_code == 403
    forged = client.post(
        "/masuk", data={"username": "budi", "password": "sandi-budi-123", "csrf": "0" * 64}
    )
    assert forged.status_code == 403
    assert not services.sessions


def test_pages_without_session_lead_to_login(client: TestClient) -> None:
    answer = client.get("/pengaduan/LPR-1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/masuk?lanjut=%2Fpengaduan%2FLPR-1"


@pytest.mark.security
def test_a_forged_or_altered_cookie_is_no_session(client: TestClient, cookie_key: str) -> None:
    session = Session("lpt_x", NOW + timedelta(hours=1), "budi", "Budi", "admin", None)
    sealed = Keys(cookie_key).seal(session)
    client.cookies.set(SESSION_COOKIE, sealed[:-2] + ("AA" if sealed[-2:] != "AA" else "BB"))
    assert client.get("/").status_code == 303
    client.cookies.set(SESSION_COOKIE, Keys(secrets.token_urlsafe(32)).seal(session))
    assert client.get("/").status_code == 303


def test_worklist_urgent_first_overdue_highlighted_filters_passed(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    page = client.get("/", params={"status": "assigned", "q": "pasar", "limit": "2"})
    assert page.status_code == 200
    order = re.findall(r'href="/pengaduan/(LPR-\d)"', page.text)
    assert order == ["LPR-2", "LPR-3"], "urgent first, then the nearest deadline"
    assert 'class="overdue' in page.text and "terlambat 2 jam" in page.text
    assert "5 jam lagi" in page.text
    assert "Menampilkan 1–2 dari 3" in page.text
    assert "offset=2" in page.text, "a link to the next page"
    call = services.worklist_calls[-1]
    assert call == {"agency": "PUPR", "states": ["assigned"], "overdue": False, "q": "pasar",
                    "limit": 2, "offset": 0}  # fmt: skip


def test_a_count_that_stopped_reads_more_than(
    client: TestClient, services: InMemoryServices
) -> None:
    """Intake counts words and overdue only up to a bound: the page says so."""
    services.worklist_count_up_to = 2
    log_in(client, "budi", "sandi-budi-123")
    page = client.get("/", params={"limit": "1"})
    assert "Menampilkan 1–1 dari lebih dari 2 pengaduan" in page.text
    assert "offset=1" in page.text, "a link to the next page"


def test_acknowledge_with_its_form_takes_effect(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    page = client.get("/pengaduan/LPR-1")
    assert page.status_code == 200 and "jalan rusak di depan pasar" in page.text
    command_id = command_id_of(page.text, "acknowledge")
    answer = client.post(
        "/pengaduan/LPR-1/acknowledge", data={"csrf": csrf_of(page.text), "command_id": command_id}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/pengaduan/LPR-1?ok=acknowledge"
    assert services.commands == [{"action": "acknowledge", "by": "budi", "command_id": command_id}]
    assert services.complaints["LPR-1"]["state"] == "in_progress"


@pytest.mark.security
def test_an_action_without_its_csrf_token_is_refused(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    page = client.get("/pengaduan/LPR-1")
    missing = client.post("/pengaduan/LPR-1/acknowledge", data={"command_id": "x"})
    assert missing.status_code == 403
    # A token of another session (another officer's page) does not fit this one.
    other = TestClient(client.app, base_url="https://testserver", follow_redirects=False)
    log_in(other, "rina", "sandi-rina-123")
    foreign = csrf_of(other.get("/pelanggaran").text)
    assert foreign != csrf_of(page.text)
    wrong = client.post("/pengaduan/LPR-1/acknowledge", data={"csrf": foreign})
    assert wrong.status_code == 403
    assert services.commands == []


@pytest.mark.security
def test_an_officer_of_another_agency_sees_intakes_refusal(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "rina", "sandi-rina-123")
    page = client.get("/pengaduan/LPR-1")
    answer = client.post(
        "/pengaduan/LPR-1/acknowledge", data={"csrf": csrf_of(page.text), "command_id": "c1"}
    )
    assert answer.status_code == 403
    assert "not your agency&#39;s complaint" in answer.text
    assert services.complaints["LPR-1"]["state"] == "assigned"


def test_a_refusal_in_the_current_state_is_shown(client: TestClient) -> None:
    log_in(client, "budi", "sandi-budi-123")
    csrf = csrf_of(client.get("/pengaduan/LPR-1").text)
    client.post("/pengaduan/LPR-1/acknowledge", data={"csrf": csrf, "command_id": "c1"})
    again = client.post("/pengaduan/LPR-1/acknowledge", data={"csrf": csrf, "command_id": "c2"})
    assert again.status_code == 409 and "not allowed in state in_progress" in again.text


def test_a_refused_triage_decision_shows_the_queue_with_the_refusal(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    csrf = csrf_of(client.get("/triase").text)
    answer = client.post(
        "/pengaduan/LPR-9/decide_triage",
        data={"csrf": csrf, "command_id": "c1", "agency": "PUPR", "kembali": "/triase"},
    )
    assert answer.status_code == 404
    assert "Antrian triase" in answer.text and "complaint not found" in answer.text


@pytest.mark.security
def test_a_form_to_an_action_the_console_does_not_offer_is_answered_404(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    csrf = csrf_of(client.get("/pengaduan/LPR-1").text)
    for path, form in (
        ("/pengaduan/LPR-1/close", {}),
        ("/hotspot/HS-1/hapus", {}),
        ("/admin/pesan-gagal/hapus", {"id": "LAPOR_EVENTS:7:notify-replies"}),
        ("/admin/pesan-gagal/kirim-ulang", {}),  # no record named
    ):
        answer = client.post(path, data={"csrf": csrf, **form})
        assert answer.status_code == 404, path
        assert "Tindakan tidak dikenal." in answer.text, path
        # The form's CSRF value is checked first.
        assert client.post(path, data=form).status_code == 403, path
    assert services.commands == []


def test_a_session_intake_no_longer_accepts_goes_back_to_login(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    services.sessions.clear()  # revoked at intake (disabled account, logout elsewhere)
    answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/masuk")
    assert SESSION_COOKIE not in client.cookies


def test_logout_revokes_the_session_at_intake(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    csrf = csrf_of(client.get("/keluar").text)
    answer = client.post("/keluar", data={"csrf": csrf})
    assert answer.status_code == 303 and not services.sessions
    assert SESSION_COOKIE not in client.cookies


def test_a_one_time_password_must_be_changed_first(
    client: TestClient, services: InMemoryServices
) -> None:
    services.accounts_by_name["budi"].must_change_password = True
    log_in(client, "budi", "sandi-budi-123")
    assert client.get("/").headers["location"] == "/akun/sandi"
    page = client.get("/akun/sandi")
    answer = client.post(
        "/akun/sandi",
        data={"csrf": csrf_of(page.text), "current_password": "sandi-budi-123",
              "new_password": "sandi-baru-456", "repeat_password": "sandi-baru-456"},
    )  # fmt: skip
    assert answer.status_code == 303
    assert client.get("/").status_code == 200


def test_security_headers(client: TestClient) -> None:
    page = client.get("/lapor")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in page.text


def test_the_public_form_submits_once_with_its_client_id(
    client: TestClient, services: InMemoryServices
) -> None:
    page = client.get("/lapor")
    client_id = re.search(r'name="client_id" value="([^"]+)"', page.text)
    assert client_id is not None
    form = {"csrf": csrf_of(page.text), "client_id": client_id.group(1),
            "text": "lampu jalan mati", "phone": "081234567890", "anonymous": "on"}  # fmt: skip
    answer = client.post("/lapor", data=form)
    assert answer.status_code == 200 and "LPR-2612-00000001" in answer.text
    assert "/lacak?id=LPR-2612-00000001&amp;kunci=k1" in answer.text
    assert services.submitted == [
        {"text": "lampu jalan mati", "phone": "081234567890", "client_id": client_id.group(1),
         "anonymous": True, "confidential": False}
    ]  # fmt: skip
    client.cookies.delete(PRESESSION_COOKIE)
    assert client.post("/lapor", data=form).status_code == 403


def test_tracking_shows_what_intake_returns(client: TestClient) -> None:
    page = client.get("/lacak", params={"id": "LPR-1"})
    assert page.status_code == 200 and "jalan rusak di depan pasar" in page.text
    assert client.get("/lacak", params={"id": "LPR-404"}).status_code == 404


def test_an_admin_creates_an_account_and_sees_its_password_once(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    page = client.get("/admin/akun")
    form = {"csrf": csrf_of(page.text), "username": "sari", "name": "Sari", "role": "agency",
            "agency": "DLH"}  # fmt: skip
    answer = client.post("/admin/akun", data=form)
    password = services.accounts_by_name["sari"].password
    assert answer.status_code == 200 and password in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert password not in client.get("/admin/akun").text


def test_an_admin_makes_a_token_sees_it_once_and_revokes_it(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    csrf = csrf_of(client.get("/admin/akun").text)
    made = client.post(
        "/admin/token", data={"csrf": csrf, "name": "mitra-x", "role": "partner", "days": "30"}
    )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    secret = re.search(r"lpt_[A-Za-z0-9_-]+", made.text)
    assert secret, "the new token is shown once"
    assert secret.group(0) not in client.get("/admin/akun").text
    (view,) = services.api_tokens
    assert view["name"] == "mitra-x" and view["days"] == 30

    revoked = client.post(f"/admin/token/{view['id']}/cabut", data={"csrf": csrf})
    assert revoked.status_code in (200, 303) and view["status"] == "revoked"


@pytest.mark.security
def test_a_token_form_without_its_csrf_token_makes_nothing(
    client: TestClient, services: InMemoryServices
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    answer = client.post("/admin/token", data={"name": "mitra-x", "role": "partner"})
    assert answer.status_code == 403 and services.api_tokens == []


def test_an_officer_is_refused_the_admin_pages_by_intake(client: TestClient) -> None:
    log_in(client, "budi", "sandi-budi-123")
    assert client.get("/admin/akun").status_code == 403
    assert client.get("/triase").status_code == 403


def test_next_path_stays_on_this_site() -> None:
    assert safe_next("/pengaduan/LPR-1") == "/pengaduan/LPR-1"
    for outside in ("//evil.example/", "https://evil.example", "/\\evil", None, ""):
        assert safe_next(outside) == "/"


def test_metrics_and_health(client: TestClient) -> None:
    client.get("/lapor")
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    text = client.get("/metrics").text
    assert 'lapor_console_requests_total{method="GET",route="/lapor",status="200"}' in text


def test_an_expired_session_cookie_opens_to_nothing(cookie_key: str) -> None:
    keys = Keys(cookie_key)
    session = Session("lpt_x", NOW + timedelta(minutes=5), "budi", "Budi", "agency", "PUPR")
    sealed = keys.seal(session)
    assert keys.open(sealed, NOW) == session
    assert keys.open(sealed, NOW + timedelta(minutes=6)) is None
