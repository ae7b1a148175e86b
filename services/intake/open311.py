"""Open311 GeoReport v2 (wiki.open311.org/GeoReport_v2) on top of the complaint record:
its HTTP routes, and a partner's form turned into a submission. The documents
they answer with are `services.intake.georeport`'s.

Both `.json` and `.xml` answer every call, as the specification defines.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from lapor.contracts import Channel, InboundWeb
from lapor.contracts.commands import Role
from lapor.directory import AgencyDirectory
from lapor.runtime.http import IsoDateTime
from lapor.tokens import CHANGE_FIRST_DOC, password_refusal
from services.intake.auth import hash_token, principal_from
from services.intake.georeport import (
    MAX_REQUESTS,
    QueryRefused,
    Service,
    document_xml,
    error,
    request_json,
    requests_query,
    respond,
    service_definition_json,
    service_json,
    services_of,
)
from services.intake.photo_api import PhotoDeps, Upload, attach_photo, clean_upload
from services.intake.photos import STATUS, PhotoRefused
from services.intake.usecases import SubmissionConflict


class ServiceRow(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class AttributeValue(BaseModel):
    key: str
    name: str


class ServiceAttribute(BaseModel):
    """GeoReport v2's attribute of a service definition (none is defined here)."""

    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[AttributeValue] = []


class ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[ServiceAttribute]


class RequestRow(BaseModel):
    service_request_id: str
    status: str
    status_notes: str
    service_name: str | None
    service_code: str | None
    description: str
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str | None
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class CreatedRow(BaseModel):
    service_request_id: str
    service_notice: str | None
    account_id: str | None


class ErrorRow(BaseModel):
    code: int
    description: str


# The document states what every call answers, in both formats: the rows as JSON,
# the same rows as XML, and errors as GeoReport's own error list.
_XML = {"application/xml": {"schema": {"type": "string"}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": list[ErrorRow], "content": _XML, "description": "Unknown format or item"},
}
Format = Annotated[
    str, Path(description="Response format", json_schema_extra={"enum": ["json", "xml"]})
]


def _ok(model: Any, status: int = 200) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "content": _XML, "description": "Success"}, **_ERRORS}


# GeoReport v2 sends a new request as a form; FastAPI cannot see a body read by hand.
_FORM_FIELDS: dict[str, Any] = {
    "api_key": {"type": "string"},
    "service_code": {"type": "string"},
    "description": {"type": "string", "maxLength": 10_000},
    "request_id": {"type": "string", "maxLength": 128},
    "first_name": {"type": "string"},
    "last_name": {"type": "string"},
    "phone": {"type": "string", "maxLength": 32},
    "email": {"type": "string", "maxLength": 254},
    "lat": {"type": "number", "minimum": -90, "maximum": 90},
    "long": {"type": "number", "minimum": -180, "maximum": 180},
    "address_string": {"type": "string", "maxLength": 300},
    "media_url": {
        "type": "string",
        "description": "Refused: intake fetches no links; send `media`.",
    },
}
_FORM_SCHEMA = {
    "type": "object",
    "required": ["api_key", "service_code", "description"],
    "properties": _FORM_FIELDS,
}
_CREATE_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA},
            "multipart/form-data": {
                "schema": {
                    **_FORM_SCHEMA,
                    "properties": {
                        **_FORM_FIELDS,
                        "media": {
                            "type": "string",
                            "format": "binary",
                            "description": "A photo: JPEG, PNG or WebP, at most 5 MB and "
                            "4000 x 4000 pixels; stored without its metadata (GPS too).",
                        },
                    },
                }
            },
        },
    }
}


_CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ok(list[CreatedRow], 201),
    400: {"model": list[ErrorRow], "content": _XML, "description": "Invalid request"},
    403: {
        "model": list[ErrorRow],
        "content": _XML,
        "description": f"No valid api_key, or {CHANGE_FIRST_DOC} (an admin's session as api_key)",
    },
    409: {
        "model": list[ErrorRow],
        "content": _XML,
        "description": "This request_id was used before for a different request",
    },
    413: {"model": list[ErrorRow], "content": _XML, "description": "media over 5 MB"},
    415: {
        "model": list[ErrorRow],
        "content": _XML,
        "description": "media is not a JPEG, PNG or WebP image",
    },
    422: {
        "model": list[ErrorRow],
        "content": _XML,
        "description": "media is empty, damaged or over 4000 x 4000 pixels",
    },
}


@dataclass(frozen=True)
class Open311Context:
    repository: Callable[[], Any]
    submit: Callable[[InboundWeb], Awaitable[dict[str, Any]]]
    directories: Mapping[str, AgencyDirectory]
    zones: Mapping[str, ZoneInfo]
    default_region: str
    photos: Callable[[], PhotoDeps] | None = None


@dataclass(frozen=True)
class Catalogue:
    """The default region's services as GeoReport shows them."""

    services: Mapping[str, Service]
    names: Mapping[str, str]
    zone: ZoneInfo

    @classmethod
    def of(cls, ctx: Open311Context) -> Catalogue:
        directory = ctx.directories[ctx.default_region]
        return cls(
            services={s.code: s for s in services_of(directory)},
            names={a.code: a.name for a in directory.agencies},
            zone=ctx.zones[ctx.default_region],
        )


def fmt_ok(fmt: str) -> bool:
    return fmt in ("json", "xml")


def build_router(ctx: Open311Context) -> APIRouter:
    router = APIRouter(prefix="/open311/v2", tags=["open311"])
    catalogue = Catalogue.of(ctx)
    _service_routes(router, catalogue)
    _request_lookup_route(router, ctx, catalogue)
    _request_listing_route(router, ctx, catalogue)
    _request_creation_route(router, ctx, catalogue)
    return router


def _service_routes(router: APIRouter, catalogue: Catalogue) -> None:
    """The service list and each service's definition."""

    @router.get(
        "/services.{fmt}",
        summary="GeoReport v2: service list",
        responses=_ok(list[ServiceRow]),
    )
    async def list_services(fmt: Format) -> Response:
        if not fmt_ok(fmt):
            return error("json", 404, "format must be json or xml")
        rows = [service_json(s) for s in catalogue.services.values()]
        return respond(fmt, "services", "service", rows)

    @router.get(
        "/services/{code}.{fmt}",
        summary="GeoReport v2: service definition",
        responses=_ok(ServiceDefinition),
    )
    async def service_definition(code: str, fmt: Format) -> Response:
        if not fmt_ok(fmt):
            return error("json", 404, "format must be json or xml")
        if code not in catalogue.services:
            return error(fmt, 404, f"unknown service_code {code}")
        definition = service_definition_json(catalogue.services[code])
        if fmt == "xml":
            xml = document_xml("service_definition", definition)
            return Response(xml, media_type="application/xml")
        return JSONResponse(definition)


def _request_lookup_route(router: APIRouter, ctx: Open311Context, catalogue: Catalogue) -> None:
    """One service request, by its id."""

    @router.get(
        "/requests/{request_id}.{fmt}",
        summary="GeoReport v2: one service request",
        responses=_ok(list[RequestRow]),
    )
    async def get_request(request_id: str, fmt: Format) -> Response:
        if not fmt_ok(fmt):
            return error("json", 404, "format must be json or xml")
        doc = await ctx.repository().get(request_id.strip().upper())
        if doc is None or doc.get("confidential"):
            return error(fmt, 404, f"no service request {request_id}")
        row = request_json(doc, catalogue.zone, catalogue.names, catalogue.services)
        return respond(fmt, "service_requests", "request", [row])


def _request_listing_route(router: APIRouter, ctx: Open311Context, catalogue: Catalogue) -> None:
    """Service requests of a span of days, of some services or states, or by their ids."""

    @router.get(
        "/requests.{fmt}",
        summary="GeoReport v2: service requests",
        description=(
            "Without dates, the requests of the last 90 days; a listing spans at most 90 "
            "days and `page_size` (at most 1000) requests, the newest first. "
            "`service_request_id` (comma-separated, at most 100) overrides every other "
            "argument; `service_code` and `status` take comma-separated lists."
        ),
        responses={
            **_ok(list[RequestRow]),
            400: {"model": list[ErrorRow], "content": _XML, "description": "Invalid arguments"},
        },
    )
    async def list_requests(
        fmt: Format,
        service_request_id: str | None = None,
        service_code: str | None = None,
        start_date: IsoDateTime | None = None,
        end_date: IsoDateTime | None = None,
        status: str | None = None,
        page_size: int | None = None,
    ) -> Response:
        if not fmt_ok(fmt):
            return error("json", 404, "format must be json or xml")
        if page_size is not None and not 1 <= page_size <= MAX_REQUESTS:
            return error(fmt, 400, f"page_size must be between 1 and {MAX_REQUESTS}")
        limit = page_size or MAX_REQUESTS
        try:
            query = requests_query(
                catalogue.services,
                now=datetime.now(UTC),
                service_request_id=service_request_id,
                service_code=service_code,
                start_date=start_date,
                end_date=end_date,
                status=status,
                region=ctx.default_region,
            )
        except QueryRefused as refused:
            return error(fmt, 400, str(refused))
        docs = await _requests_found(ctx.repository(), query, limit)
        rows = [request_json(d, catalogue.zone, catalogue.names, catalogue.services) for d in docs]
        return respond(fmt, "service_requests", "request", rows)


async def _requests_found(repo: Any, query: dict[str, Any] | None, limit: int) -> list[Any]:
    """The stored complaints a listing's query finds, at most `limit`."""
    if query is None:
        return []
    if "_id" in query:
        # One lookup by _id each: FerretDB pushes no `$in` down.
        found = [await repo.get(i) for i in query["_id"]["$in"]]
        return [d for d in found if d is not None and not d.get("confidential")][:limit]
    # Indexed by (region, received_at) and bounded by the 90-day span. FerretDB
    # sorts in memory whatever the index returned (no sort or limit is pushed
    # down), so that span, not the page size, is what keeps the listing cheap.
    return list(await repo.search(query, limit))


def _request_creation_route(router: APIRouter, ctx: Open311Context, catalogue: Catalogue) -> None:
    """A partner's new service request, with a photo as the `media` part."""

    @router.post(
        "/requests.{fmt}",
        summary="GeoReport v2: create a service request",
        status_code=201,
        responses=_CREATE_RESPONSES,
        openapi_extra=_CREATE_FORM,
    )
    async def create_request(fmt: Format, request: Request) -> Response:
        if not fmt_ok(fmt):
            return error("json", 404, "format must be json or xml")
        read = await _read_form(request)
        if read is None:
            return error(fmt, 400, "the multipart form could not be read")
        form, media = read
        record = await ctx.repository().token(hash_token(form.get("api_key", "")))
        if record is None or record.get("role") not in (Role.PARTNER.value, Role.ADMIN.value):
            return error(fmt, 403, "a valid api_key is required")
        if (pending := password_refusal(record)) is not None:
            return error(fmt, 403, pending)
        submission = _submission(form, record, catalogue, ctx.default_region)
        if isinstance(submission, str):
            return error(fmt, 400, submission)
        upload, photo = None, None
        if media is not None and ctx.photos is not None:
            photos = ctx.photos()
            data = await media.read(photos.limits.max_bytes + 1)
            upload = Upload(data, media.content_type, Channel.OPEN311, principal_from(record))
            try:
                # Checked before the request is stored: a refused photo refuses the request.
                photo = await clean_upload(photos, upload, None)
            except PhotoRefused as refused:
                return error(fmt, STATUS[refused.reason], f"media: {refused.detail}")
        stored = await _store(ctx, submission, fmt)
        if isinstance(stored, Response):
            return stored
        if upload is not None and ctx.photos is not None:
            try:
                await attach_photo(ctx.photos(), stored["_id"], upload, photo)
            except PhotoRefused as refused:
                return error(fmt, STATUS[refused.reason], f"media: {refused.detail}")
        row = {"service_request_id": stored["_id"], "service_notice": None, "account_id": None}
        return respond(fmt, "service_requests", "request", [row], status=201)


async def _read_form(request: Request) -> tuple[dict[str, str], UploadFile | None] | None:
    """The form's fields and its `media` file part; None when the multipart framing
    cannot be read."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body).items()}, None
    try:
        parts = await request.form(max_files=1, max_fields=40)
    except Exception:  # starlette's MultiPartException and malformed framing
        return None
    found = parts.get("media")
    form = {k: v for k, v in parts.items() if isinstance(v, str)}
    return form, found if isinstance(found, UploadFile) else None


def _submission(
    form: Mapping[str, str], record: Mapping[str, Any], catalogue: Catalogue, region: str
) -> InboundWeb | str:
    """The complaint a partner's form asks for, or why it is refused (a 400)."""
    if form.get("media_url"):
        # Fetching a client's link would let it make intake call any address
        # (SSRF), and a link shown to officers would be neither stripped nor kept.
        return "media_url is not accepted: send the photo itself as the multipart file part `media`"
    service = catalogue.services.get(form.get("service_code", ""))
    if service is None:
        return "service_code is missing or unknown (see services)"
    description = (form.get("description") or "").strip()
    if not description:
        return "description is required"
    try:
        return InboundWeb(
            source=f"open311:{record['name']}",
            message_id=form.get("request_id") or uuid.uuid4().hex,
            region=region,
            text=description,
            name=" ".join(filter(None, [form.get("first_name"), form.get("last_name")])) or None,
            phone=form.get("phone"),
            email=form.get("email"),
            category=service.category,
            location=_location(form),
            received_at=datetime.now(UTC),
        )
    except ValidationError as invalid:
        return _form_errors(invalid)


async def _store(
    ctx: Open311Context, submission: InboundWeb, fmt: str
) -> dict[str, Any] | Response:
    """The stored complaint, or the client's answer when it is not stored."""
    try:
        return await ctx.submit(submission)
    except SubmissionConflict:
        # A partner's request_id is its own (the source names the partner) and
        # bound to the whole request: a resend repeats it, anything else is refused.
        return error(
            fmt,
            409,
            "this request_id was already used for a different request: a resend must "
            "repeat the request unchanged; a new request needs a new request_id",
        )
    except Exception as exc:  # a kept rejection: answer the client with its reason
        detail = getattr(exc, "detail", None)
        if detail is None:
            raise
        return error(fmt, 400, detail)


# The names a GeoReport client sent, for the fields of InboundWeb that they fill.
_FORM_NAMES = {"text": "description", "message_id": "request_id", "lon": "long"}


def _form_errors(invalid: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(_FORM_NAMES.get(str(p), str(p)) for p in e['loc'])}: {e['msg']}"
        for e in invalid.errors()
    )


def _location(form: Mapping[str, str]) -> dict[str, Any] | None:
    lat, lon, address = form.get("lat"), form.get("long"), form.get("address_string")
    if not (lat or lon or address):
        return None
    try:
        return {
            "lat": float(lat) if lat else None,
            "lon": float(lon) if lon else None,
            "address": address,
        }
    except ValueError:
        return {"address": address}
