"""Photos of complaints on the real intake app, FerretDB (GridFS) and NATS.

The reporter's link, the holding agency and admins attach photos; the stored bytes
carry no metadata; whoever may not see photos gets nothing of them, and outside a
confidential complaint's circle the photo does not exist; what is not a JPEG, PNG
or WebP image is refused whatever its name and header say, and the refusal is kept.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gridfs import AsyncGridFSBucket
from PIL import Image
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from lapor.contracts import subjects
from lapor.contracts.commands import Role
from lapor.runtime.outbox import Outbox
from services.intake.auth import new_token, token_record
from services.intake.photo_store import GridFsPhotoStore
from tests.e2e.helpers import eventually
from tests.integration.intake_harness import http_client, serving_intake
from tests.unit.intake.test_photos import exif_with_gps, gps_of, picture
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

DATABASE = "lapor_photos"
UNAUTHORIZED = 13
TEXT = "Jembatan kayu di Desa Sungai Tabuk patah sebagian, anak sekolah lewat setiap pagi"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tokens(own_mongo: Any) -> dict[str, str]:
    made = {
        "pupr": (Role.AGENCY, "PUPR"),
        "dinkes": (Role.AGENCY, "DINKES"),
        "admin": (Role.ADMIN, None),
        "sp4n": (Role.PARTNER, None),
    }
    secrets = {name: new_token() for name in made}
    await own_mongo[DATABASE].api_tokens.insert_many(
        [token_record(secrets[name], role, name, agency) for name, (role, agency) in made.items()]
    )
    return secrets


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def events(own_nc: Any) -> AsyncIterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def keep(msg: Any) -> None:
        seen.append({"subject": msg.subject, **json.loads(msg.data)})

    subs = [
        await own_nc.subscribe(subjects.COMPLAINT_PHOTO_ATTACHED, cb=keep),
        await own_nc.subscribe(subjects.PHOTO_REFUSED, cb=keep),
    ]
    yield seen
    for sub in subs:
        await sub.unsubscribe()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(own_servers: Stack, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving_intake(
            own_servers, DATABASE, http_rate_per_minute=0, rate_per_hour=1000, rate_per_day=1000
        ) as app,
        http_client(app) as client,
    ):
        yield client


@pytest.fixture
def db(own_mongo: Any) -> Any:
    return own_mongo[DATABASE]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def complaint(
    http: httpx.AsyncClient, db: Any, *, confidential: bool = False, agency: str = "PUPR"
) -> tuple[str, str]:
    """A complaint held by `agency`: (tracking id, the reporter's key)."""
    response = await http.post(
        "/api/v1/complaints", json={"text": TEXT, "confidential": confidential}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    # The router is not running here: the complaint is given to the agency directly.
    await db.complaints.update_one(
        {"_id": body["tracking_id"]}, {"$set": {"agency": agency, "state": "assigned"}}
    )
    return body["tracking_id"], body["citizen_url"].split("key=", 1)[1]


def upload(data: bytes, name: str = "foto.jpg", content_type: str = "image/jpeg") -> Any:
    return {"file": (name, data, content_type)}


def announced(events: list[dict[str, Any]], key: str, value: str) -> Any:
    async def probe() -> bool:
        return any(e.get(key) == value for e in events)

    return probe


GPS_JPEG = picture("JPEG", size=(320, 240), exif=exif_with_gps())


async def test_the_reporter_attaches_a_photo_stored_without_gps(
    http: httpx.AsyncClient, db: Any, events: list[dict[str, Any]], own_nc: Any
) -> None:
    tracking_id, key = await complaint(http, db)
    assert gps_of(GPS_JPEG)

    response = await http.post(
        f"/api/v1/complaints/{tracking_id}/photos", params={"key": key}, files=upload(GPS_JPEG)
    )

    assert response.status_code == 201, response.text
    view = response.json()
    assert view["content_type"] == "image/jpeg"
    assert (view["width"], view["height"]) == (320, 240)
    assert view["url"] == f"/api/v1/complaints/{tracking_id}/photos/{view['id']}"
    # The GridFS round trip on FerretDB: the stored bytes, read back by the bucket.
    bucket = AsyncGridFSBucket(db, bucket_name="complaint_photos")
    stream = await bucket.open_download_stream(view["id"])
    stored = await stream.read()
    assert len(stored) == view["size"] and gps_of(stored) == {}
    assert b"Exif" not in stored and b"KameraMerekRahasia" not in stored
    assert stream.metadata["complaint_id"] == tracking_id
    assert stream.metadata["uploaded_by"] == "citizen"
    # Served to the reporter as stored, with headers that keep it private and inert.
    served = await http.get(view["url"], params={"key": key})
    assert served.status_code == 200
    assert served.content == stored
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["cache-control"] == "private"
    assert served.headers["x-content-type-options"] == "nosniff"
    # The complaint lists it, and its history says so.
    record = (await http.get(f"/api/v1/complaints/{tracking_id}", params={"key": key})).json()
    assert [p["id"] for p in record["photos"]] == [view["id"]]
    assert record["history"][-1]["reason"] == "photo attached"
    # Announced once, without the image.
    await own_nc.flush()
    await eventually(announced(events, "photo_id", view["id"]), timeout=30)
    [event] = [e for e in events if e.get("photo_id") == view["id"]]
    assert event["subject"] == subjects.COMPLAINT_PHOTO_ATTACHED
    assert event["sha256"] == stream.metadata["sha256"]

    # The same upload again: the same photo, nothing stored twice.
    again = await http.post(
        f"/api/v1/complaints/{tracking_id}/photos", params={"key": key}, files=upload(GPS_JPEG)
    )
    assert again.status_code == 200 and again.json()["id"] == view["id"]
    files = await db["complaint_photos.files"].count_documents(
        {"metadata.complaint_id": tracking_id}
    )
    assert files == 1


async def test_the_holding_agency_and_admins_attach_and_see_up_to_three(
    http: httpx.AsyncClient, db: Any, tokens: dict[str, str]
) -> None:
    tracking_id, _ = await complaint(http, db)
    ids = []
    for n, who in enumerate(("pupr", "admin", "pupr")):
        data = picture("PNG", size=(30 + n, 20))
        response = await http.post(
            f"/api/v1/complaints/{tracking_id}/photos",
            headers=bearer(tokens[who]),
            files=upload(data, "x.png", "image/png"),
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    fourth = await http.post(
        f"/api/v1/complaints/{tracking_id}/photos",
        headers=bearer(tokens["admin"]),
        files=upload(picture("WEBP"), "x.webp", "image/webp"),
    )
    assert fourth.status_code == 409
    assert fourth.json()["detail"]["reason"] == "too_many_photos"
    seen = await http.get(f"/api/v1/complaints/{tracking_id}", headers=bearer(tokens["pupr"]))
    assert [p["id"] for p in seen.json()["photos"]] == ids


@pytest.mark.security
async def test_another_agency_and_the_public_neither_add_nor_see_photos(
    http: httpx.AsyncClient, db: Any, tokens: dict[str, str]
) -> None:
    tracking_id, key = await complaint(http, db)
    path = f"/api/v1/complaints/{tracking_id}/photos"
    other = await http.post(path, headers=bearer(tokens["dinkes"]), files=upload(GPS_JPEG))
    assert other.status_code == 403
    partner = await http.post(path, headers=bearer(tokens["sp4n"]), files=upload(GPS_JPEG))
    assert partner.status_code == 403
    nobody = await http.post(path, files=upload(GPS_JPEG))
    assert nobody.status_code == 401
    wrong_key = await http.post(path, params={"key": "lpc_" + "A" * 32}, files=upload(GPS_JPEG))
    assert wrong_key.status_code == 401

    photo = (await http.post(path, params={"key": key}, files=upload(GPS_JPEG))).json()
    assert (await http.get(photo["url"], headers=bearer(tokens["dinkes"]))).status_code == 403
    assert (await http.get(photo["url"])).status_code == 401
    public = (await http.get(f"/api/v1/complaints/{tracking_id}")).json()
    assert public["photos"] == []
    assert "photo_id" not in json.dumps(public["history"])
    foreign = await http.get(f"/api/v1/complaints/{tracking_id}", headers=bearer(tokens["dinkes"]))
    assert foreign.json()["photos"] == []


@pytest.mark.security
async def test_a_confidential_complaint_s_photo_does_not_exist_outside_its_circle(
    http: httpx.AsyncClient, db: Any, tokens: dict[str, str]
) -> None:
    tracking_id, key = await complaint(http, db, confidential=True)
    photo = (
        await http.post(
            f"/api/v1/complaints/{tracking_id}/photos",
            headers=bearer(tokens["pupr"]),
            files=upload(GPS_JPEG),
        )
    ).json()
    for headers in ({}, bearer(tokens["dinkes"]), bearer(tokens["sp4n"])):
        served = await http.get(photo["url"], headers=headers)
        assert served.status_code == 404, headers
        assert served.content != (await http.get(photo["url"], params={"key": key})).content
    upload_by_other = await http.post(
        f"/api/v1/complaints/{tracking_id}/photos",
        headers=bearer(tokens["dinkes"]),
        files=upload(GPS_JPEG),
    )
    assert upload_by_other.status_code == 404
    assert (await http.get(photo["url"], headers=bearer(tokens["admin"]))).status_code == 200


@pytest.mark.security
@pytest.mark.parametrize(
    ("data", "name", "content_type", "status", "reason"),
    [
        (b"<svg onload='alert(1)'/>", "foto.jpg", "image/jpeg", 415, "unsupported_type"),
        (b"<html><script>x</script>", "foto.png", "image/png", 415, "unsupported_type"),
        (picture("GIF", mode="L"), "foto.jpg", "image/jpeg", 415, "unsupported_type"),
        (picture("PNG", size=(4001, 2), mode="L"), "a.png", "image/png", 422, "too_many_pixels"),
        (b"", "kosong.jpg", "image/jpeg", 422, "empty"),
    ],
    ids=["svg-as-jpeg", "html-as-png", "gif-as-jpeg", "too-wide", "empty"],
)
async def test_what_is_not_an_accepted_image_is_refused_and_kept(
    http: httpx.AsyncClient,
    db: Any,
    events: list[dict[str, Any]],
    data: bytes,
    name: str,
    content_type: str,
    status: int,
    reason: str,
) -> None:
    tracking_id, key = await complaint(http, db)
    response = await http.post(
        f"/api/v1/complaints/{tracking_id}/photos",
        params={"key": key},
        files=upload(data, name, content_type),
    )
    assert response.status_code == status, response.text
    assert response.json()["detail"]["reason"] == reason
    doc = await db.complaints.find_one({"_id": tracking_id})
    assert not doc.get("photos")
    kept = await db.photo_refusals.find_one({"complaint_id": tracking_id})
    assert kept["reason"] == reason and kept["size"] == len(data)
    assert kept["declared_type"] == content_type
    assert "data" not in kept
    await eventually(announced(events, "refusal_id", kept["_id"]), timeout=30)


async def test_an_upload_over_the_size_limit_never_reaches_the_store(
    http: httpx.AsyncClient, db: Any
) -> None:
    tracking_id, key = await complaint(http, db)
    big = GPS_JPEG + b"\x00" * (5 * 1024 * 1024)
    response = await http.post(
        f"/api/v1/complaints/{tracking_id}/photos", params={"key": key}, files=upload(big)
    )
    assert response.status_code == 413
    assert not (await db.complaints.find_one({"_id": tracking_id})).get("photos")


async def test_open311_takes_a_photo_as_the_media_part(
    http: httpx.AsyncClient, db: Any, tokens: dict[str, str]
) -> None:
    form = {
        "api_key": tokens["sp4n"],
        "service_code": "PUPR-jalan",
        "description": TEXT,
        "request_id": "sp4n-photo-1",
    }
    png = picture("PNG", size=(50, 40), exif=exif_with_gps())
    created = await http.post(
        "/open311/v2/requests.json", data=form, files={"media": ("a.png", png, "image/png")}
    )
    assert created.status_code == 201, created.text
    tracking_id = created.json()[0]["service_request_id"]
    doc = await db.complaints.find_one({"_id": tracking_id})
    [photo] = doc["photos"]
    assert photo["uploaded_by"] == "partner" and photo["content_type"] == "image/png"
    stream = await AsyncGridFSBucket(db, bucket_name="complaint_photos").open_download_stream(
        photo["id"]
    )
    assert gps_of(await stream.read()) == {}
    # Open311 answers the public, which sees no photos.
    shown = (await http.get(f"/open311/v2/requests/{tracking_id}.json")).json()
    assert shown[0]["media_url"] is None
    # A resend of the same request with the same photo: one complaint, one photo.
    again = await http.post(
        "/open311/v2/requests.json", data=form, files={"media": ("a.png", png, "image/png")}
    )
    assert again.json()[0]["service_request_id"] == tracking_id
    assert len((await db.complaints.find_one({"_id": tracking_id}))["photos"]) == 1


@pytest.mark.security
async def test_open311_fetches_no_link_and_refuses_a_spoofed_media_part(
    http: httpx.AsyncClient, db: Any, tokens: dict[str, str]
) -> None:
    form = {"api_key": tokens["sp4n"], "service_code": "PUPR-jalan", "description": TEXT}
    link = await http.post(
        "/open311/v2/requests.json",
        data={**form, "request_id": "sp4n-link", "media_url": "https://169.254.169.254/x.jpg"},
    )
    assert link.status_code == 400 and "media_url" in link.json()[0]["description"]
    spoofed = await http.post(
        "/open311/v2/requests.json",
        data={**form, "request_id": "sp4n-spoof"},
        files={"media": ("a.jpg", b"MZ\x90\x00 not a photo", "image/jpeg")},
    )
    assert spoofed.status_code == 415
    assert await db.complaints.count_documents({"source_key": {"$regex": "sp4n-(link|spoof)"}}) == 0


def test_the_test_images_are_what_they_claim() -> None:
    with Image.open(io.BytesIO(GPS_JPEG)) as image:
        assert image.format == "JPEG"


@pytest.fixture(scope="module")
def guarded(workdir: Path) -> Iterator[Stack]:
    """Our FerretDB with its access table: each process logs in as its own user."""
    stack = Stack.for_tests(workdir / "photos_least_privilege", db_auth=True)
    try:
        stack.start_servers()
        yield stack
    finally:
        stack.stop()


@pytest.mark.security
async def test_intake_keeps_photos_under_its_own_grants_and_the_router_reads_none(
    guarded: Stack,
) -> None:
    intake: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        guarded.mongo_url_for("intake"), tz_aware=True
    )
    router: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        guarded.mongo_url_for("router"), tz_aware=True
    )
    try:
        store = GridFsPhotoStore(intake[guarded.mongo_db], Outbox([]))
        await store.ensure_indexes()
        await store.save("ph_" + "1" * 20, GPS_JPEG, {"complaint_id": "LPR-TEST"})
        stored = await store.open("ph_" + "1" * 20)
        assert stored is not None
        assert b"".join([chunk async for chunk in stored.chunks]) == GPS_JPEG
        await store.remove_orphan("ph_" + "1" * 20)
        assert await store.open("ph_" + "1" * 20) is None
        await store.add_refusal({"_id": "PHR-1", "stored_at": datetime.now(UTC)}, [])
        for collection in ("complaint_photos.files", "complaint_photos.chunks", "photo_refusals"):
            with pytest.raises(OperationFailure) as refused:
                await router[guarded.mongo_db][collection].find_one({})
            assert refused.value.code == UNAUTHORIZED, collection
    finally:
        await intake.close()
        await router.close()


async def test_a_photo_larger_than_other_bodies_passes_the_body_limit(
    http: httpx.AsyncClient, db: Any
) -> None:
    """Other requests stop at 64 KiB; a photo upload may carry a photo's 5 MB."""
    noise = Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3))
    out = io.BytesIO()
    noise.save(out, "JPEG", quality=95)
    assert len(out.getvalue()) > 128 * 1024
    tracking_id, key = await complaint(http, db)
    response = await http.post(
        f"/api/v1/complaints/{tracking_id}/photos",
        params={"key": key},
        files=upload(out.getvalue()),
    )
    assert response.status_code == 201, response.text
    too_big = await http.post("/api/v1/complaints", json={"text": "x" * 70_000})
    assert too_big.status_code == 413


async def test_a_photo_s_chunks_are_read_through_their_index(
    http: httpx.AsyncClient, db: Any
) -> None:
    """GridFS reads a file's chunks by `files_id`: with the photo id a string, our
    FerretDB build answers that through the `(files_id, n)` index, not a scan of
    every photo's bytes."""
    tracking_id, key = await complaint(http, db)
    photo = (
        await http.post(
            f"/api/v1/complaints/{tracking_id}/photos", params={"key": key}, files=upload(GPS_JPEG)
        )
    ).json()
    explained = await db.command(
        "explain",
        {
            "find": "complaint_photos.chunks",
            "filter": {"files_id": photo["id"], "n": {"$gte": 0}},
            "sort": {"n": 1},
        },
    )
    if "ferretdbVersion" not in explained.get("serverInfo", {}):
        pytest.skip("the plan checked here is our FerretDB build's")
    plan = " ".join(explained["queryPlanner"]["Plan"])
    assert "USING INDEX" in plan and "files_id_1_n_1" in plan, plan
