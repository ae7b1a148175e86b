"""Each audience sees what is meant for it, on the real FerretDB.

Complaints with a full history (routed, forwarded with an internal note, routed
again, acknowledged, asked, replied to, answered, rated) are built with the real
lifecycle rules and stored through intake's repository; then every view that
serves a complaint is asked as every audience: intake's status API (no
credentials, the reporter's secret link, tokens of the holding agency, another
agency and an admin), Open311 JSON and XML, notify's delivery log and SLA's
breaches. The expectations are the cells of `lapor.audience.POLICY`, the table
of the README's "Who sees what": each test case is one cell.

Every text typed in the complaint carries a phone number of its own (its last
three digits name the part), so a masked number in a view still tells which
part leaked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from lapor.audience import MASKED_EMAIL, POLICY, Access, Audience, access
from lapor.contracts import Channel, Place, PlaceArea, subjects
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Role
from lapor.directory import load_directory
from lapor.report.api import report_router
from lapor.tokens import stored_tokens
from services.intake import domain, lifecycle
from services.intake.api import build_router as intake_router
from services.intake.auth import citizen_key, new_token, token_record
from services.intake.open311 import Open311Context
from services.intake.open311 import build_router as open311_router
from services.intake.repository import ComplaintRepository
from services.notify.api import delivery_router
from services.notify.repository import NotificationRepository
from services.sla.api import breaches_router
from services.sla.repository import MongoSlaStore
from tests.e2e.helpers import eventually, sms_payload
from tests.factories import complaint_routed
from tests.integration.intake_harness import running_intake
from tests.unit.sla.fakes import routed as sla_routed
from tests.unit.sla.test_engine import Harness, wita
from tools.devstack import ROOT, Stack

pytestmark = [pytest.mark.integration]

DB = "lapor_audiences"
WITA = ZoneInfo("Asia/Makassar")
LINK_SECRET = b"audience-link-secret-" + b"x" * 16
AGENCIES = frozenset({"PUPR", "DLH", "DISHUB"})

OFFICER = "Petugas Bambang"
ADMIN_NAME = "Admin Rina"
CITIZEN_ACTOR = "citizen:sms:5f0c1e2d3a4b"
REPORTER_NAME = "Siti Rahmawati"
LAT, LON = -3.4123456, 114.8654321
ROUTER_REASON = "kata kunci: jalan-berlubang-xyz"
PLACE = Place(
    kecamatan=PlaceArea(code="63.03.01", name="Aluh Aluh"),
    desa=PlaceArea(code="63.03.01.2002", name="Tanipah"),
    source="text",
    confidence=1.0,
)

# Per part: the number typed into it. Masked, it shows as +62 ••• ••• <last three>.
PHONES = {
    "text": "0812 3456 7101",
    "address": "0812-3456-7202",
    "internal_note": "081234567303",
    "question": "+62 812 3456 7404",
    "citizen_reply": "6281234567505",
    "answer": "0812 3456 7606",
}
ANSWER_EMAIL = "humas.pupr@contoh.go.id"


def masked(part: str) -> str:
    return f"+62 ••• ••• {PHONES[part][-3:]}"


@dataclass
class World:
    ids: dict[str, str]  # "named", "anonymous", "confidential" → tracking id
    tokens: dict[Audience | str, str]
    intake: httpx.AsyncClient
    notify: httpx.AsyncClient
    sla: httpx.AsyncClient


def _command(tracking_id: str, action: Action, actor: Actor, **fields: Any) -> ComplaintCommand:
    return ComplaintCommand(
        command_id=f"{action.value}-{tracking_id}-{fields.get('agency') or ''}",
        complaint_id=tracking_id,
        action=action,
        actor=actor,
        **fields,
    )


async def _act(repo: ComplaintRepository, command: ComplaintCommand, at: datetime) -> None:
    doc = await repo.get(command.complaint_id)
    assert doc is not None
    known = lifecycle.Known(agencies=AGENCIES)
    decision = lifecycle.decide(doc, command, now=at, known=known)
    await repo.apply(command.complaint_id, domain.command_transition(command, decision, at))


async def _route(repo: ComplaintRepository, tracking_id: str, round_: int, agency: str) -> None:
    doc = await repo.get(tracking_id)
    assert doc is not None
    event = complaint_routed(
        tracking_id,
        round_=round_,
        received_at=doc["received_at"],
        agency=agency,
        confidence=0.8,
        reasons=[ROUTER_REASON],
        place=PLACE,
    )
    await repo.apply(tracking_id, domain.routed_transition(event))


async def _file(
    repo: ComplaintRepository, tracking_id: str, *, anonymous: bool, confidential: bool
) -> None:
    """One complaint through a whole life: DLH forwards it with an internal note, PUPR
    acknowledges, asks, gets the citizen's reply, answers and is rated."""
    now = datetime.now(UTC) - timedelta(hours=1)
    doc = domain.new_complaint(
        tracking_id=tracking_id,
        region="banjar",
        channel=Channel.WEB,
        text=f"Jalan berlubang besar di depan pasar, hubungi saya {PHONES['text']}",
        received_at=now,
        source_key=f"web:audiences:{tracking_id}",
        phone_hash="5f0c1e2d3a4b" + "0" * 20,
        anonymous=anonymous,
        confidential=confidential,
        truncated=False,
        stored_at=now,
        submission={
            "name": REPORTER_NAME,
            "location": {
                "address": f"Jl. A. Yani km 5, rumah pak RT {PHONES['address']}",
                "lat": LAT,
                "lon": LON,
            },
        },
    )
    await repo.add_complaint(doc)
    dlh = Actor(role=Role.AGENCY, id="Petugas DLH", agency="DLH")
    pupr = Actor(role=Role.AGENCY, id=OFFICER, agency="PUPR")
    citizen = Actor(role=Role.CITIZEN, id=CITIZEN_ACTOR.split(":", 1)[1])
    step = iter(range(1, 100))

    def at() -> datetime:
        return now + timedelta(minutes=next(step))

    await _route(repo, tracking_id, 0, "DLH")
    note = f"bukan wewenang DLH, tanya pak Anton {PHONES['internal_note']}"
    await _act(repo, _command(tracking_id, Action.FORWARD, dlh, text=note), at())
    await _route(repo, tracking_id, 1, "PUPR")
    await _act(repo, _command(tracking_id, Action.ACKNOWLEDGE, pupr), at())
    question = f"Di sebelah mana persisnya? Telepon kami {PHONES['question']}"
    await _act(repo, _command(tracking_id, Action.ASK, pupr, text=question), at())
    reply = f"Depan toko emas, WA saya {PHONES['citizen_reply']}"
    await _act(repo, _command(tracking_id, Action.REPLY, citizen, text=reply), at())
    answer = f"Sudah ditambal. Info {PHONES['answer']} atau {ANSWER_EMAIL}"
    await _act(repo, _command(tracking_id, Action.ANSWER, pupr, text=answer), at())
    await _act(repo, _command(tracking_id, Action.RATE, citizen, score=2), at())


async def _notifications(db: Any, tracking_id: str) -> None:
    now = datetime.now(UTC)
    await db.notify_contacts.insert_one({"_id": tracking_id, "region": "banjar"})
    rows = [
        ("citizen", "sms", None, "+62812****"),
        ("official", "email", "PUPR", "pupr@banjarkab.test"),
        ("official", "email", "DLH", "dlh@banjarkab.test"),
    ]
    await db.notifications.insert_many(
        {
            "_id": f"{tracking_id}:{n}",
            "complaint_id": tracking_id,
            "cause_event_id": f"e{n}",
            "audience": audience,
            "channel": channel,
            "template": "t",
            "recipient": recipient,
            "agency": agency,
            "status": "sent",
            "attempts": 1,
            "created_at": now,
        }
        for n, (audience, channel, agency, recipient) in enumerate(rows)
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(own_servers: Stack, own_mongo: Any) -> AsyncIterator[World]:
    db = own_mongo[DB]
    repo = ComplaintRepository(db)
    await repo.ensure_indexes()
    ids = {
        "named": "LPR-AUD1-NAMED",
        "anonymous": "LPR-AUD2-ANONM",
        "confidential": "LPR-AUD3-CONFI",
    }
    await _file(repo, ids["named"], anonymous=False, confidential=False)
    await _file(repo, ids["anonymous"], anonymous=True, confidential=False)
    await _file(repo, ids["confidential"], anonymous=False, confidential=True)
    await _notifications(db, ids["named"])

    tokens: dict[Audience | str, str] = {
        Audience.AGENCY: new_token(),
        Audience.OTHER_AGENCY: new_token(),
        Audience.ADMIN: new_token(),
        "partner": new_token(),
    }
    await db.api_tokens.insert_many(
        [
            token_record(tokens[Audience.AGENCY], Role.AGENCY, OFFICER, "PUPR"),
            token_record(tokens[Audience.OTHER_AGENCY], Role.AGENCY, "Petugas Dishub", "DISHUB"),
            token_record(tokens[Audience.ADMIN], Role.ADMIN, ADMIN_NAME, None),
            token_record(tokens["partner"], Role.PARTNER, "kota-app", None),
        ]
    )

    async def unused(*_args: Any) -> Any:
        raise AssertionError("not called")

    zones = {"banjar": WITA}
    intake = FastAPI()
    intake.include_router(intake_router(lambda: repo, zones, unused, unused, LINK_SECRET))
    intake.include_router(report_router(lambda: db, ROOT / "data"))
    directory = load_directory(ROOT / "data" / "regions" / "banjar")
    intake.include_router(
        open311_router(
            Open311Context(
                repository=lambda: repo,
                submit=unused,
                directories={"banjar": directory},
                zones=zones,
                default_region="banjar",
            )
        )
    )
    # Reading the delivery log opens no sealed address: the log keeps them masked.
    notifications = NotificationRepository(db, cast(Any, None))
    notify = FastAPI()
    notify.include_router(
        delivery_router(lambda: notifications, zones, "banjar", stored_tokens(lambda: db))
    )

    # PUPR ignores C1, DLH ignores C2: one breach record of each agency on FerretDB.
    sla_harness = Harness(wita(11, 2, 9), store=MongoSlaStore(db))  # type: ignore[arg-type]
    await sla_harness.engine.store.ensure_indexes()  # type: ignore[attr-defined]
    await sla_harness.send(
        sla_routed("C1", wita(11, 2, 9)), sla_routed("C2", wita(11, 2, 9), agency="DLH")
    )
    await sla_harness.run_until(wita(11, 12, 9), step=timedelta(hours=6))
    sla = FastAPI()
    sla.include_router(breaches_router(lambda: sla_harness.deps, stored_tokens(lambda: db)))

    def client(app: FastAPI, name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")

    async with (
        client(intake, "intake") as intake_http,
        client(notify, "notify") as notify_http,
        client(sla, "sla") as sla_http,
    ):
        yield World(ids, tokens, intake_http, notify_http, sla_http)


async def _status(world: World, which: str, audience: Audience) -> httpx.Response:
    """GET /api/v1/complaints/{id} as `audience`."""
    tracking_id = world.ids[which]
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    if audience is Audience.REPORTER:
        params["key"] = citizen_key(tracking_id, LINK_SECRET)
    elif audience is not Audience.PUBLIC:
        headers["Authorization"] = f"Bearer {world.tokens[audience]}"
    return await world.intake.get(
        f"/api/v1/complaints/{tracking_id}", params=params, headers=headers
    )


def _cells(*keys: str, leaks: frozenset[str] = frozenset()) -> list[Any]:
    """One case per cell of the table; a restricted cell of a part in `leaks` reproduces
    a leak (marked `security`: it failed before the view followed the table)."""
    return [
        pytest.param(
            key,
            audience,
            id=f"{key}-{audience.value}",
            marks=[pytest.mark.security]
            if key in leaks and access(audience, key) is not Access.FULL
            else [],
        )
        for key in keys
        for audience in Audience
    ]


# The history's texts: each typed with its own number (`PHONES`).
TEXT_PARTS = ("text", "address", "answer", "question", "citizen_reply", "internal_note")


@pytest.mark.parametrize(
    ("part", "audience"), _cells(*TEXT_PARTS, leaks=frozenset(TEXT_PARTS) - {"address"})
)
async def test_status_api_texts_follow_the_table(
    world: World, part: str, audience: Audience
) -> None:
    rule = access(audience, part)
    for which in ("named", "anonymous"):
        response = await _status(world, which, audience)
        assert response.status_code == 200, response.text
        body = response.text
        hidden = rule is Access.NONE or (
            which == "anonymous" and rule is Access.MASKED_UNLESS_ANONYMOUS
        )
        if hidden:
            assert PHONES[part] not in body and masked(part) not in body, (which, body)
        elif rule in (Access.MASKED, Access.MASKED_UNLESS_ANONYMOUS):
            assert PHONES[part] not in body and masked(part) in body, (which, body)
        else:
            assert PHONES[part] in body, (which, body)


@pytest.mark.parametrize(("part", "audience"), _cells("coordinates", "reporter_name", "place"))
async def test_status_api_location_and_name_follow_the_table(
    world: World, part: str, audience: Audience
) -> None:
    rule = access(audience, part)
    for which in ("named", "anonymous"):
        view = (await _status(world, which, audience)).json()
        value = (view.get("location") or {}).get("lat") if part == "coordinates" else None
        if part == "reporter_name":
            value = view.get("reporter_name")
        if part == "place":
            value = ((view.get("place") or {}).get("desa") or {}).get("code")
        shown = rule is Access.FULL or (rule is Access.UNLESS_ANONYMOUS and which == "named")
        expected = {
            "coordinates": LAT,
            "reporter_name": REPORTER_NAME,
            "place": PLACE.desa.code if PLACE.desa else None,
        }[part]
        assert value == (expected if shown else None), (which, view)


@pytest.mark.parametrize(
    ("part", "audience"),
    _cells("officer", "citizen_actor", "routing", leaks=frozenset({"officer", "routing"})),
)
async def test_status_api_actors_and_routing_follow_the_table(
    world: World, part: str, audience: Audience
) -> None:
    view = (await _status(world, "named", audience)).json()
    actors = {entry["actor"] for entry in view["history"]}
    body = str(view)
    rule = access(audience, part)
    if part == "officer":
        assert (f"agency:{OFFICER}" in actors) is (rule is Access.FULL), actors
        assert (OFFICER in body) is (rule is Access.FULL)
        assert "agency" in actors or rule is Access.FULL
    elif part == "citizen_actor":
        assert (CITIZEN_ACTOR in actors) is (rule is Access.FULL), actors
        assert "citizen" in actors or rule is Access.FULL
    else:
        assert (ROUTER_REASON in body) is rule.shown, body


@pytest.mark.parametrize("audience", list(Audience))
async def test_a_confidential_complaint_exists_only_for_its_circle(
    world: World, audience: Audience
) -> None:
    response = await _status(world, "confidential", audience)
    assert response.status_code == (200 if access(audience, "confidential").shown else 404)


@pytest.mark.security
async def test_the_status_api_never_shows_the_email_typed_in_an_answer_to_the_public(
    world: World,
) -> None:
    body = (await _status(world, "named", Audience.PUBLIC)).text
    assert ANSWER_EMAIL not in body and MASKED_EMAIL in body
    # Hidden parts leave no trace in the reasons either: no score, no archived text.
    assert "2/5" not in body


@pytest.mark.security
@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_open311_shows_what_the_public_may_see(world: World, fmt: str) -> None:
    assert access(Audience.PUBLIC, "text") is Access.MASKED
    named, anonymous = world.ids["named"], world.ids["anonymous"]
    listed = await world.intake.get(
        f"/open311/v2/requests.{fmt}",
        params={"service_request_id": ",".join(world.ids.values())},
    )
    assert listed.status_code == 200, listed.text
    body = listed.text
    assert named in body and anonymous in body and world.ids["confidential"] not in body
    for part in ("text", "address"):
        assert PHONES[part] not in body
    assert masked("text") in body
    # The named reporter's address is shown masked, the anonymous one's not at all.
    assert body.count(masked("address")) == 1
    assert body.count(str(LAT)) == 1 and body.count(str(LON)) == 1
    one = await world.intake.get(f"/open311/v2/requests/{anonymous}.{fmt}")
    assert one.status_code == 200
    assert str(LAT) not in one.text and masked("address") not in one.text
    assert "Jl. A. Yani" not in one.text
    secret = await world.intake.get(f"/open311/v2/requests/{world.ids['confidential']}.{fmt}")
    assert secret.status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/reports/agencies", "/reports/agencies.html"])
async def test_the_report_is_aggregates_only(world: World, path: str) -> None:
    """Public, and nothing in it names a complaint, a text, a place, a person or a number."""
    assert access(Audience.PUBLIC, "report") is Access.FULL
    response = await world.intake.get(path)
    assert response.status_code == 200, response.text
    body = response.text
    assert "PUPR" in body  # the agencies are there, the complaints behind them are not
    for secret in (*world.ids.values(), OFFICER, REPORTER_NAME, ROUTER_REASON, ANSWER_EMAIL):
        assert secret not in body
    for part in PHONES:
        assert PHONES[part] not in body and masked(part) not in body
    assert "Jalan berlubang" not in body and "Jl. A. Yani" not in body and str(LAT) not in body


def _bearer(world: World, who: Audience | str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[who]}"} if who in world.tokens else {}


@pytest.mark.parametrize(
    ("who", "status", "agencies"),
    [
        pytest.param(Audience.PUBLIC, 401, None, marks=pytest.mark.security),
        pytest.param("partner", 403, None, marks=pytest.mark.security),
        pytest.param(Audience.AGENCY, 200, ["PUPR"], marks=pytest.mark.security),
        pytest.param(Audience.OTHER_AGENCY, 200, [], marks=pytest.mark.security),
        (Audience.ADMIN, 200, [None, "PUPR", "DLH"]),
    ],
)
async def test_the_delivery_log_shows_each_officer_their_agency_s_rows(
    world: World, who: Audience | str, status: int, agencies: list[str | None] | None
) -> None:
    response = await world.notify.get(
        f"/api/v1/complaints/{world.ids['named']}/notifications", headers=_bearer(world, who)
    )
    assert response.status_code == status, response.text
    if agencies is not None:
        assert [n["agency"] for n in response.json()["notifications"]] == agencies


@pytest.mark.parametrize(
    ("who", "query", "status", "agencies"),
    [
        pytest.param(Audience.PUBLIC, {}, 401, None, marks=pytest.mark.security),
        pytest.param("partner", {}, 403, None, marks=pytest.mark.security),
        pytest.param(Audience.AGENCY, {}, 200, {"PUPR"}, marks=pytest.mark.security),
        pytest.param(Audience.AGENCY, {"agency": "DLH"}, 403, None, marks=pytest.mark.security),
        pytest.param(Audience.OTHER_AGENCY, {}, 200, set(), marks=pytest.mark.security),
        (Audience.ADMIN, {}, 200, {"PUPR", "DLH"}),
        (Audience.ADMIN, {"agency": "DLH"}, 200, {"DLH"}),
    ],
)
async def test_breaches_show_each_officer_their_agency_s_rows(
    world: World,
    who: Audience | str,
    query: dict[str, str],
    status: int,
    agencies: set[str] | None,
) -> None:
    response = await world.sla.get("/api/v1/breaches", params=query, headers=_bearer(world, who))
    assert response.status_code == status, response.text
    if agencies is not None:
        body = response.json()
        assert {b["agency"] for b in body["breaches"]} == agencies
        assert body["total"] == len(body["breaches"])


def test_every_cell_of_the_table_is_asked() -> None:
    """The parametrisations above cover every part of the policy a view serves."""
    asked = {*TEXT_PARTS, "coordinates", "reporter_name", "officer", "citizen_actor", "routing"}
    asked.add("place")
    asked.add("photos")  # asked per audience by tests/integration/test_photos.py
    asked |= {"confidential", "delivery_log", "breaches", "report"}
    # In every view for everyone, or (phone, e-mail) in none: no view reads them.
    elsewhere = {"phone", "email", "category", "state", "dates", "agency"}
    elsewhere |= {"priority", "deadlines"}
    assert asked | elsewhere == {part.key for part in POLICY}


async def test_cek_answers_the_filing_number_only_and_never_with_a_text(
    own_servers: Stack, own_nc: Any, own_mongo: Any
) -> None:
    """CEK by SMS: the reporter's own number gets state, agency and dates; any other
    number the same answer as for an unknown id. No answer carries a text."""
    answers: list[dict[str, Any]] = []

    async def keep(msg: Any) -> None:
        answers.append(json.loads(msg.data))

    subscription = await own_nc.subscribe(subjects.CITIZEN_COMMAND_ANSWERED, cb=keep)
    db = own_mongo["lapor_audiences_cek"]
    reporter, stranger = "+6281234509101", "+6281234509102"
    text = f"BANJAR jalan rusak parah di depan sekolah, hubungi {PHONES['text']}"
    try:
        async with running_intake(own_servers, own_mongo, "lapor_audiences_cek"):
            filed = sms_payload(reporter, text)
            await own_nc.publish(subjects.INBOUND_SMS, json.dumps(filed).encode())
            source = f"sms:{filed['gateway_id']}"
            doc = await eventually(lambda: db.complaints.find_one({"source_key": source}))
            for sender in (reporter, stranger):
                cek = sms_payload(sender, f"CEK {doc['_id']}")
                await own_nc.publish(subjects.INBOUND_SMS, json.dumps(cek).encode())

            async def both() -> list[dict[str, Any]] | None:
                status = [a for a in answers if a.get("command") == "status"]
                return status if len(status) == 2 else None

            own, other = sorted(await eventually(both), key=lambda a: not a["found"])
    finally:
        await subscription.unsubscribe()
    assert own["found"] is True and own["state"] == "received" and own["region"] == "banjar"
    assert other["found"] is False
    assert (other["state"], other["agency"], other["answer_due"]) == (None, None, None)
    for answer in (own, other):
        assert "text" not in answer and PHONES["text"] not in json.dumps(answer)
