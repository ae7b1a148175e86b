"""Open311 GeoReport v2 (wiki.open311.org/GeoReport_v2) on top of the complaint record.

Service codes are the agency categories of the region's directory
(`PUPR-jalan`); `expected_datetime` is the answer date the citizen was told;
confidential complaints never appear and nothing identifies a reporter.
Both `.json` and `.xml` answer every call, as the specification defines.

A listing without dates covers the last 90 days, and no listing spans more
(the specification's limit); a list of `service_request_id`s overrides every
other argument.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from lapor.audience import Audience, access, reveal
from lapor.contracts import AGENCY_OUT_OF_SCOPE, STATE_LABELS, Channel, InboundWeb, State
from lapor.contracts.commands import Role
from lapor.directory import AgencyDirectory
from lapor.runtime.http import IsoDateTime
from services.intake.auth import hash_token, principal_from
from services.intake.photo_api import PhotoDeps, Upload, attach_photo, clean_upload
from services.intake.photos import STATUS, PhotoRefused, photo_url
from services.intake.usecases import SubmissionConflict

CLOSED_STATES = {State.CLOSED.value, State.REJECTED.value}
MAX_REQUESTS = 1000  # the spec lets a server cap a listing (the largest page_size)
MAX_IDS = 100  # service_request_ids of one listing, each looked up by its _id
REQUEST_WINDOW = timedelta(days=90)  # the spec's default span, and the longest one
STATUSES = ("open", "closed")
PUBLIC = Audience.PUBLIC  # Open311 answers anyone: partners' api_key only submits


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    agency: str
    category: str


def services_of(directory: AgencyDirectory) -> list[Service]:
    return [
        Service(
            code=f"{agency.code}-{category.id}",
            name=category.label,
            description=f"{category.label} ({agency.name})",
            group=agency.name,
            keywords=(*category.strong, *category.keywords)[:8],
            agency=agency.code,
            category=category.id,
        )
        for agency in directory.agencies
        if agency.code != AGENCY_OUT_OF_SCOPE
        for category in agency.categories
    ]


def service_json(service: Service) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "service_name": service.name,
        "description": service.description,
        "metadata": False,
        "type": "realtime",
        "keywords": ",".join(service.keywords),
        "group": service.group,
    }


def service_definition_json(service: Service) -> dict[str, Any]:
    # No service asks for extra fields (`metadata` is false): no attributes.
    return {"service_code": service.code, "attributes": []}


def request_json(
    doc: Mapping[str, Any],
    zone: ZoneInfo,
    agency_names: Mapping[str, str],
    services: Mapping[str, Service],
) -> dict[str, Any]:
    """One complaint as a GeoReport service request, as the public sees it
    (`lapor.audience`): no reporter, no confidential complaint, no anonymous reporter's
    address or coordinates, phone numbers and e-mail addresses masked in every text.

    `services` by service code: a request names its service as the service list does.
    """
    location = (doc.get("submission") or {}).get("location") or {}
    anonymous = bool(doc.get("anonymous"))
    agency = doc.get("agency")
    deadlines = doc.get("deadlines") or {}
    category = doc.get("category")
    state = State(doc["state"])
    notes = STATE_LABELS[state] + (f" ({doc['outcome']})" if doc.get("outcome") else "")
    code = f"{agency}-{category}" if agency and category else None
    service = services.get(code) if code else None
    return {
        "service_request_id": doc["_id"],
        "status": "closed" if state.value in CLOSED_STATES else "open",
        "status_notes": notes,
        "service_name": service.name if service else None,
        "service_code": code,
        # Never listed when confidential; should one slip through, its text stays out.
        "description": "" if doc.get("confidential") else reveal(PUBLIC, "text", doc["text"]),
        "agency_responsible": agency_names.get(agency, agency) if agency else None,
        "service_notice": None,
        "requested_datetime": _iso(doc.get("received_at"), zone),
        "updated_datetime": _iso(doc.get("updated_at"), zone),
        "expected_datetime": _iso(deadlines.get("answer"), zone),
        "address": reveal(PUBLIC, "address", location.get("address"), anonymous=anonymous),
        "address_id": None,
        "zipcode": None,
        "lat": reveal(PUBLIC, "coordinates", location.get("lat"), anonymous=anonymous),
        "long": reveal(PUBLIC, "coordinates", location.get("lon"), anonymous=anonymous),
        "media_url": _media_url(doc),
    }


def _media_url(doc: Mapping[str, Any]) -> str | None:
    """The first photo's address, where the policy shows photos to Open311's public
    (it does not: `lapor.audience.POLICY`, part `photos`)."""
    photos = doc.get("photos") or []
    if not photos or not access(PUBLIC, "photos").shown or doc.get("confidential"):
        return None
    return photo_url(str(doc["_id"]), str(photos[0]["id"]))


def _iso(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat(timespec="seconds") if value else None


# GeoReport's XML wraps each list in an element of the plural name and each item in
# one of the singular name; the JSON is the same document with plain arrays.
_XML_ITEMS = {"attributes": "attribute", "values": "value"}
_XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
# XML 1.0 can carry only the characters of its Char production (w3.org/TR/xml/#charsets):
# not the C0 controls other than tab, LF and CR, not U+FFFE/U+FFFF and not lone
# surrogates (a Python str can hold them, UTF-8 cannot). No escape helps, `&#0;` is as
# invalid as the raw character, so one such character in a stored address, description
# or name would make the whole listing unreadable. It is replaced with U+FFFD rather than
# dropped: the reader sees that something was there, and the words either side stay apart.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_chars(text: str) -> str:
    """`text` with every character XML 1.0 cannot carry replaced by U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


def _xml_fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _xml_fill(ET.SubElement(element, key), child)
    elif isinstance(value, list):
        for child in value:
            _xml_fill(ET.SubElement(element, _XML_ITEMS.get(element.tag, "item")), child)
    elif value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)


def _xml_bytes(top: ET.Element) -> bytes:
    """Every Open311 XML document, well-formed whatever text its elements hold.

    The characters XML cannot carry are replaced in every text and attribute value here,
    once for all documents; ElementTree escapes the markup characters (`&`, `<`, `>`,
    and quotes in attributes). A parser turns a raw CR into LF (XML 1.0, 2.11), so CRs
    are written as `&#13;` and come back as stored: 0x0D is never part of a multi-byte
    UTF-8 sequence and tags hold none, so each one in the output is a text's own.
    """
    for element in top.iter():
        element.text = xml_chars(element.text) if element.text else element.text
        element.tail = xml_chars(element.tail) if element.tail else element.tail
        for name, attribute in list(element.attrib.items()):
            element.set(name, xml_chars(attribute))
    body = ET.tostring(top, encoding="utf-8").replace(b"\r", b"&#13;")
    return _XML_DECLARATION + body


def to_xml(root: str, item: str, rows: list[dict[str, Any]]) -> bytes:
    top = ET.Element(root)
    for row in rows:
        _xml_fill(ET.SubElement(top, item), row)
    return _xml_bytes(top)


def document_xml(root: str, document: Mapping[str, Any]) -> bytes:
    """A single document (a service definition) under its root element."""
    top = ET.Element(root)
    _xml_fill(top, document)
    return _xml_bytes(top)


def respond(
    fmt: str, root: str, item: str, rows: list[dict[str, Any]], status: int = 200
) -> Response:
    if fmt == "xml":
        return Response(to_xml(root, item, rows), status, media_type="application/xml")
    return JSONResponse(rows, status)


class QueryRefused(ValueError):
    """GET requests arguments the specification does not allow."""


def requests_query(
    services: Mapping[str, Service],
    *,
    now: datetime,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status: str | None = None,
    region: str | None = None,
) -> dict[str, Any] | None:
    """The store query of GET requests; None when no request can match.

    Raises `QueryRefused` for a span over 90 days, an end before the start, an
    unknown status or more than `MAX_IDS` ids.

    With `region`, the query is equality on the region and a range of
    `received_at`: the `(region, received_at)` index answers it on MongoDB and
    on our FerretDB build alike (the other conditions, `$in` included, are then
    checked on the documents the index returned).
    """
    query: dict[str, Any] = {"confidential": {"$ne": True}}
    if service_request_id and (ids := [i.upper() for i in _listed(service_request_id)]):
        # The specification: a list of ids overrides all other arguments.
        if len(ids) > MAX_IDS:
            raise QueryRefused(f"at most {MAX_IDS} service_request_ids at once")
        query["_id"] = {"$in": ids}
        return query
    if region:
        query["region"] = region
    if service_code:
        codes = [services[c] for c in _listed(service_code) if c in services]
        if not codes:
            return None
        query["category"] = {"$in": sorted({c.category for c in codes})}
        query["agency"] = {"$in": sorted({c.agency for c in codes})}
    start, end = request_window(start_date, end_date, now)
    query["received_at"] = {"$gte": start, "$lte": end}
    if status:
        wanted = set(_listed(status))
        if not wanted <= set(STATUSES):
            raise QueryRefused("status must be open or closed (comma-separated)")
        if len(wanted) == 1:
            states = sorted(CLOSED_STATES)
            query["state"] = {"$in": states} if "closed" in wanted else {"$nin": states}
    return query


def request_window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The span of requested_datetime a listing covers: the last 90 days by default;
    one date given, the 90 days from or up to it."""
    start = _aware(start) if start else None
    end = _aware(end) if end else None
    if start is None and end is None:
        return _shifted(now, -REQUEST_WINDOW), now
    if start is None:
        assert end is not None
        return _shifted(end, -REQUEST_WINDOW), end
    if end is None:
        return start, _shifted(start, REQUEST_WINDOW)
    if end < start:
        raise QueryRefused("end_date is before start_date")
    if end - start > REQUEST_WINDOW:
        raise QueryRefused("start_date and end_date may not span more than 90 days")
    return start, end


def _shifted(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:  # at the edge of the calendar: as far as it goes
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=UTC)


def _listed(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def error(fmt: str, status: int, description: str) -> Response:
    return respond(fmt, "errors", "error", [{"code": status, "description": description}], status)


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
    _request_reading_routes(router, ctx, catalogue)
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


def _request_reading_routes(router: APIRouter, ctx: Open311Context, catalogue: Catalogue) -> None:
    """One service request, and listings of them."""

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
        repo = ctx.repository()
        if query is None:
            docs = []
        elif "_id" in query:
            # One lookup by _id each: FerretDB pushes no `$in` down.
            found = [await repo.get(i) for i in query["_id"]["$in"]]
            docs = [d for d in found if d is not None and not d.get("confidential")][:limit]
        else:
            # Indexed by (region, received_at) and bounded by the 90-day span. FerretDB
            # sorts in memory whatever the index returned (no sort or limit is pushed
            # down), so that span, not the page size, is what keeps the listing cheap.
            docs = await repo.search(query, limit)
        rows = [request_json(d, catalogue.zone, catalogue.names, catalogue.services) for d in docs]
        return respond(fmt, "service_requests", "request", rows)


def _request_creation_route(router: APIRouter, ctx: Open311Context, catalogue: Catalogue) -> None:
    """A partner's new service request, with a photo as the `media` part."""

    @router.post(
        "/requests.{fmt}",
        summary="GeoReport v2: create a service request",
        status_code=201,
        responses={
            **_ok(list[CreatedRow], 201),
            400: {"model": list[ErrorRow], "content": _XML, "description": "Invalid request"},
            403: {"model": list[ErrorRow], "content": _XML, "description": "No valid api_key"},
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
        },
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


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
