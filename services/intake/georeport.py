"""GeoReport v2's documents (wiki.open311.org/GeoReport_v2): the service catalogue,
a complaint as a service request, the listing's query, and both formats of every
answer, JSON and XML.

Service codes are the agency categories of the region's directory
(`PUPR-jalan`); `expected_datetime` is the answer date the citizen was told;
confidential complaints never appear and nothing identifies a reporter.

A listing without dates covers the last 90 days, and no listing spans more
(the specification's limit); a list of `service_request_id`s overrides every
other argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from fastapi import Response
from fastapi.responses import JSONResponse

from lapor.audience import Audience, access, reveal
from lapor.contracts import AGENCY_OUT_OF_SCOPE, STATE_LABELS, State
from lapor.directory import AgencyDirectory
from services.intake.photos import photo_url

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


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _listed(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def error(fmt: str, status: int, description: str) -> Response:
    return respond(fmt, "errors", "error", [{"code": status, "description": description}], status)
