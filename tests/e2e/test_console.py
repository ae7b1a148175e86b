"""The console in a real browser (Debian's headless Chromium driven by Playwright)
against the whole stack: officers and an admin do their daily work, the citizen
answers by SMS on the bus, and what must be refused is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lapor.account_store import ensure_admin_account
from lapor.contracts import subjects
from tests.e2e.helpers import Outbox, eventually, sms_payload
from tools.devstack import CONSOLE, ROOT, Stack

pytestmark = [pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_PRESENT = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = ROOT / "var" / "screenshots" / "console"
ADMIN = "admin-konsol"
ADMIN_PASSWORD = "sandi-admin-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def console(stack: Stack) -> Iterator[str]:
    stack.start_console()
    try:
        yield stack.url(CONSOLE)
    finally:
        stack.children[CONSOLE].stop()


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM_PRESENT:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: apt-get install chromium")
        pytest.skip("no /usr/bin/chromium")
    from playwright.async_api import async_playwright

    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def new_page(browser: Any, console: str, *, phone: bool = False) -> Any:
    size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    context = await browser.new_context(base_url=console, viewport=size, locale="id-ID")
    return await context.new_page()


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def log_in(page: Any, username: str, password: str) -> None:
    await page.goto("/masuk")
    await page.get_by_label("Nama pengguna").fill(username)
    await page.get_by_label("Kata sandi").fill(password)
    await page.get_by_role("button", name="Masuk").click()


async def create_officer(admin: Any, username: str, name: str, agency: str) -> str:
    """The admin creates an officer's account in the console; its one-time password."""
    await admin.goto("/admin/akun")
    await admin.get_by_label("Nama pengguna", exact=True).fill(username)
    await admin.get_by_label("Nama lengkap").fill(name)
    await admin.get_by_label("Peran", exact=True).select_option("agency")
    await admin.get_by_label("OPD (untuk petugas)").select_option(agency)
    await admin.get_by_role("button", name="Buat akun").click()
    secret = admin.locator("#one-time-secret")
    return str(await secret.inner_text()).strip()


async def first_login(page: Any, username: str, one_time: str) -> str:
    """An officer's first login: the one-time password must be replaced at once."""
    await log_in(page, username, one_time)
    await page.wait_for_url("**/akun/sandi")
    password = "sandi-" + uuid.uuid4().hex
    await page.get_by_label("Kata sandi saat ini").fill(one_time)
    await page.get_by_label("Kata sandi baru (minimal 10 karakter)").fill(password)
    await page.get_by_label("Ulangi kata sandi baru").fill(password)
    await page.get_by_role("button", name="Simpan").click()
    await page.wait_for_url(re.compile(r".*/\?pesan=sandi$"))
    return password


async def file_sms(nc: Any, db: Any, sender: str, text: str, state: str) -> dict[str, Any]:
    payload = sms_payload(sender, text)
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())

    async def stored() -> dict[str, Any] | None:
        doc = await db.complaints.find_one({"source_key": f"sms:{payload['gateway_id']}"})
        return doc if doc and doc["state"] == state and doc["deadlines"].get("answer") else None

    return await eventually(stored)


async def state_of(db: Any, tracking_id: str, state: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        doc = await db.complaints.find_one({"_id": tracking_id})
        return doc if doc and doc["state"] == state else None

    return await eventually(reached)


async def test_officers_and_an_admin_work_in_the_console(
    stack: Stack, console: str, browser: Any, nc: Any, db: Any
) -> None:
    await ensure_admin_account(db, ADMIN, ADMIN_PASSWORD)
    outbox = await Outbox().attach(nc)
    citizen = "+6281234500901"
    normal = await file_sms(
        nc,
        db,
        "+6281234500902",
        "BANJAR jalan berlubang di depan pasar Martapura",
        "assigned",
    )
    urgent = await file_sms(
        nc, db, citizen, "BANJAR jalan rusak, ada kecelakaan, korban luka parah", "assigned"
    )
    assert urgent["agency"] == normal["agency"] == "PUPR" and urgent["priority"] == "urgent"

    admin = await new_page(browser, console)
    await log_in(admin, ADMIN, ADMIN_PASSWORD)
    await admin.wait_for_url("**/ikhtisar")
    suffix = uuid.uuid4().hex[:6]
    budi = await create_officer(admin, f"budi{suffix}", "Budi Santoso", "PUPR")
    await shot(admin, "akun")

    # An officer of the holding agency: the new urgent complaint precedes every other.
    officer = await new_page(browser, console)
    await first_login(officer, f"budi{suffix}", budi)
    await officer.goto("/")
    rows = officer.locator("table.worklist tbody tr")
    ids = [str(t).strip() for t in await rows.locator("td:first-child a").all_inner_texts()]
    assert urgent["_id"] in ids and normal["_id"] in ids
    top = ids.index(urgent["_id"])
    assert top < ids.index(normal["_id"])
    classes = [await rows.nth(i).get_attribute("class") or "" for i in range(top + 1)]
    assert all("urgent" in c for c in classes), "only urgent complaints come before it"
    await shot(officer, "daftar-kerja")

    await officer.get_by_role("link", name=urgent["_id"]).click()
    await officer.get_by_role("button", name="Terima (tanggapan pertama)").click()
    await officer.get_by_text("Tindakan „Terima” tersimpan.").wait_for()
    assert (await state_of(db, urgent["_id"], "in_progress"))["agency"] == "PUPR"
    await officer.get_by_label("Tanya pelapor (dikirim lewat SMS)").fill("Di titik mana persisnya?")
    await officer.get_by_role("button", name="Tanya", exact=True).click()
    await state_of(db, urgent["_id"], "needs_info")

    # The citizen answers by SMS; the officer sees the reply on the complaint page.
    reply = sms_payload(citizen, f"BALAS {urgent['_id']} depan SD 2 dekat jembatan")
    await nc.publish(subjects.INBOUND_SMS, json.dumps(reply).encode())
    await state_of(db, urgent["_id"], "in_progress")
    await officer.goto(f"/pengaduan/{urgent['_id']}")
    await officer.get_by_text("depan SD 2 dekat jembatan").first.wait_for()
    await officer.get_by_label("Jawaban untuk pelapor").fill("Korban sudah dibawa, jalan ditambal.")
    await officer.get_by_label("Hasil").select_option("resolved")
    await officer.get_by_role("button", name="Jawab").click()
    await officer.get_by_text("Tindakan „Jawab” tersimpan.").wait_for()
    await state_of(db, urgent["_id"], "responded")
    await shot(officer, "pengaduan")

    async def answered() -> bool:
        return any("jalan ditambal" in m["text"] for m in outbox.to(citizen))

    await eventually(answered)

    # An admin decides a triage case in the console.
    unsure = await file_sms(
        nc, db, "+6281234500903", "BANJAR jalan rusak dan sekolah tutup dan air mati", "triage"
    )
    await admin.goto("/triase")
    card = admin.locator(f"#t-{unsure['_id']}")
    await card.get_by_label("OPD").select_option("PDAM")
    await card.get_by_label("Prioritas").select_option("high")
    await shot(admin, "triase")
    await card.get_by_role("button", name="Putuskan").click()
    await admin.get_by_text("Tindakan „Putuskan” tersimpan.").wait_for()
    decided = await state_of(db, unsure["_id"], "assigned")
    assert decided["agency"] == "PDAM" and decided["priority"] == "high"

    # The oversight pages read intake's and sla's answers with the admin's session.
    for path, heading in (
        ("/ikhtisar", "Ikhtisar semua OPD"),
        ("/akuntabilitas", "Akuntabilitas per OPD dan petugas"),
        ("/pelanggaran", "Pelanggaran tenggat dan eskalasi"),
    ):
        answer = await admin.goto(path)
        assert answer is not None and answer.status == 200, path
        await admin.get_by_role("heading", name=re.compile(heading)).wait_for()
    await admin.goto("/ikhtisar")
    await admin.get_by_role("row", name=re.compile("PUPR")).first.wait_for()
    report = await admin.goto("/laporan")
    assert report is not None and report.status == 200
    for path in ("/pelanggaran", "/akuntabilitas"):
        answer = await officer.goto(path)
        assert answer is not None and answer.status == 200, path
    await outbox.detach()


@pytest.mark.security
async def test_another_agency_and_a_form_without_csrf_are_refused(
    stack: Stack, console: str, browser: Any, nc: Any, db: Any
) -> None:
    await ensure_admin_account(db, ADMIN, ADMIN_PASSWORD)
    doc = await file_sms(
        nc, db, "+6281234500904", "BANJAR jalan berlubang besar di depan kantor camat", "assigned"
    )
    assert doc["agency"] == "PUPR"
    admin = await new_page(browser, console)
    await log_in(admin, ADMIN, ADMIN_PASSWORD)
    suffix = uuid.uuid4().hex[:6]
    one_time = await create_officer(admin, f"dinkes{suffix}", "Petugas Dinkes", "DINKES")

    other = await new_page(browser, console, phone=True)
    await first_login(other, f"dinkes{suffix}", one_time)
    await other.goto(f"/pengaduan/{doc['_id']}")
    # The forms are there (intake decides, not the console); intake refuses.
    await other.get_by_role("button", name="Terima (tanggapan pertama)").click()
    await other.get_by_role("alert").wait_for()
    assert "Ditolak" in str(await other.get_by_role("alert").inner_text())
    await shot(other, "ditolak-opd-lain")
    assert (await db.complaints.find_one({"_id": doc["_id"]}))["state"] == "assigned"

    # A form without its CSRF token (a page of another site posting it), sent by
    # someone intake would let do it: an admin's internal note.
    await admin.goto(f"/pengaduan/{doc['_id']}")
    form = admin.locator(f"form[action='/pengaduan/{doc['_id']}/note']")
    await form.locator("input[name=csrf]").evaluate("e => e.remove()")
    await form.get_by_label("Catatan internal (tidak terlihat oleh pelapor)").fill("x")
    async with admin.expect_response(f"**/pengaduan/{doc['_id']}/note") as answer:
        await form.get_by_role("button", name="Simpan catatan").click()
    assert (await answer.value).status == 403
    await admin.get_by_text("Formulir ini kedaluwarsa").wait_for()
    history = (await db.complaints.find_one({"_id": doc["_id"]}))["history"]
    assert not any((h.get("detail") or {}).get("action") == "note" for h in history)


async def test_a_citizen_submits_on_the_web_and_tracks_it(
    stack: Stack, console: str, browser: Any, db: Any
) -> None:
    page = await new_page(browser, console, phone=True)
    await page.goto("/lapor")
    await page.get_by_label("Isi pengaduan").fill("Lampu jalan mati di depan masjid desa Jawa")
    await page.get_by_label("Nomor HP untuk balasan SMS (boleh dikosongkan)").fill("081234500905")
    await page.get_by_role("button", name="Kirim pengaduan").click()
    tracking_id = str(await page.locator("#tracking-id").inner_text()).strip()
    await page.locator("#citizen-link").click()
    await page.get_by_role("heading", name=re.compile(tracking_id)).wait_for()
    assert await db.complaints.count_documents({"_id": tracking_id}) == 1
    await shot(page, "lacak")


async def test_an_admin_settles_a_dead_letter_in_the_console(
    stack: Stack, console: str, browser: Any, db: Any
) -> None:
    """The dead-letter service's API (services.deadletters) behind the "Pesan gagal" page."""
    await ensure_admin_account(db, ADMIN, ADMIN_PASSWORD)
    record_id = f"LAPOR_EVENTS:{uuid.uuid4().int % 10**9}:notify-e2e"
    await db.dead_letters.insert_one(
        {
            "_id": record_id,
            "service": "notify",
            "consumer": "notify-e2e",
            "reason": "max_deliveries",
            "deliveries": 5,
            "error": "RuntimeError: gateway unreachable",
            "subject": "lapor.event.complaint.answered",
            "stored_at": datetime.now(UTC),
            "payload_sealed": None,
        }
    )
    admin = await new_page(browser, console)
    await log_in(admin, ADMIN, ADMIN_PASSWORD)
    await admin.wait_for_url("**/ikhtisar")
    await admin.get_by_role("link", name="Pesan gagal").click()
    row = admin.get_by_role("row", name=re.compile(re.escape(record_id)))
    await row.get_by_text("gateway unreachable").wait_for()
    await shot(admin, "pesan-gagal")
    await row.get_by_label("Alasan").fill("uji coba, sudah dikirim manual")
    await row.get_by_role("button", name="Tandai selesai").click()
    await admin.get_by_text("Pesan ditandai selesai.").wait_for()
    stored = await db.dead_letters.find_one({"_id": record_id})
    assert stored["resolution"] == "uji coba, sudah dikirim manual"
    assert stored["resolved_by"]
