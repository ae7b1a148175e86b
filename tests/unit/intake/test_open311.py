"""Open311 GeoReport v2 (wiki.open311.org/GeoReport_v2): the documents in both formats,
checked against the specification's field lists, and the arguments of GET requests."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import pytest

from lapor.directory import load_directory
from services.intake.georeport import (
    REQUEST_WINDOW,
    QueryRefused,
    document_xml,
    request_json,
    request_window,
    requests_query,
    service_definition_json,
    service_json,
    services_of,
    to_xml,
)
from tools.devstack import ROOT

# The specification's field lists.
SERVICE_FIELDS = [
    "service_code", "service_name", "description", "metadata", "type", "keywords", "group",
]  # fmt: skip
DEFINITION_FIELDS = ["service_code", "attributes"]
ATTRIBUTE_FIELDS = {
    "variable", "code", "datatype", "required", "datatype_description", "order",
    "description", "values",
}  # fmt: skip
REQUEST_FIELDS = [
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
    "long", "media_url",
]  # fmt: skip
ISO_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$"

DIRECTORY = load_directory(ROOT / "data" / "regions" / "banjar")
SERVICES = {s.code: s for s in services_of(DIRECTORY)}
NAMES = {a.code: a.name for a in DIRECTORY.agencies}
WITA = ZoneInfo("Asia/Makassar")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROAD = next(s for s in SERVICES.values() if s.agency == "PUPR")


def complaint(**fields: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "_id": "LPR-7K3M-9QX2T",
        "state": "assigned",
        "agency": ROAD.agency,
        "category": ROAD.category,
        "text": "Jalan berlubang besar di depan pasar",
        "received_at": NOW - timedelta(days=2),
        "updated_at": NOW - timedelta(days=1),
        "deadlines": {"answer": NOW + timedelta(days=12)},
        "submission": {"location": {"lat": -3.41, "lon": 114.85, "address": "Jl. A. Yani"}},
        "reporter_hash": "r" * 32,
        "history": [{"actor": "citizen:sms:abcdef123456"}],
    }
    return doc | fields


def test_a_service_has_exactly_the_specified_fields_in_json_and_xml() -> None:
    row = service_json(ROAD)
    assert list(row) == SERVICE_FIELDS
    assert row["type"] in ("realtime", "batch", "blackbox") and row["metadata"] is False
    root = ET.fromstring(to_xml("services", "service", [row]))
    assert root.tag == "services"
    assert [child.tag for child in root.find("service")] == SERVICE_FIELDS
    assert root.findtext("service/metadata") == "false"


def test_the_service_definition_has_the_specified_shape_in_json_and_xml() -> None:
    definition = service_definition_json(ROAD)
    assert list(definition) == DEFINITION_FIELDS and definition["attributes"] == []
    root = ET.fromstring(document_xml("service_definition", definition))
    # <service_definition><service_code/><attributes/></service_definition>, no wrapper.
    assert root.tag == "service_definition"
    assert [child.tag for child in root] == DEFINITION_FIELDS
    assert root.findtext("service_code") == ROAD.code
    assert list(root.find("attributes")) == [] and not (root.find("attributes").text or "")


def test_attributes_and_their_values_nest_as_the_specification_shows() -> None:
    attribute = {
        "variable": True, "code": "WHISHETN", "datatype": "singlevaluelist", "required": True,
        "datatype_description": None, "order": 1, "description": "Which?",
        "values": [{"key": "123", "name": "Ford"}, {"key": "124", "name": "Chrysler"}],
    }  # fmt: skip
    root = ET.fromstring(
        document_xml("service_definition", {"service_code": "X", "attributes": [attribute]})
    )
    element = root.find("attributes/attribute")
    assert element is not None and {child.tag for child in element} == ATTRIBUTE_FIELDS
    assert element.findtext("variable") == "true"
    assert [v.findtext("name") for v in root.findall("attributes/attribute/values/value")] == [
        "Ford",
        "Chrysler",
    ]


def test_a_request_has_the_specified_fields_and_names_its_service() -> None:
    row = request_json(complaint(), WITA, NAMES, SERVICES)
    assert list(row) == REQUEST_FIELDS
    assert row["service_code"] == ROAD.code
    assert row["service_name"] == ROAD.name != ROAD.category
    assert row["agency_responsible"] == NAMES["PUPR"]
    assert row["status"] == "open" and row["lat"] == -3.41 and row["long"] == 114.85
    for field in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert re.fullmatch(ISO_WITH_OFFSET, row[field]) and row[field].endswith("+08:00")
    assert "citizen" not in repr(row) and "r" * 32 not in repr(row)
    root = ET.fromstring(to_xml("service_requests", "request", [row]))
    assert root.tag == "service_requests"
    assert [child.tag for child in root.find("request")] == REQUEST_FIELDS
    assert root.findtext("request/service_name") == ROAD.name


def test_a_closed_or_unrouted_request() -> None:
    closed = request_json(complaint(state="closed", outcome="resolved"), WITA, NAMES, SERVICES)
    assert closed["status"] == "closed" and "resolved" in closed["status_notes"]
    unrouted = request_json(
        complaint(state="received", agency=None, category=None), WITA, NAMES, SERVICES
    )
    assert unrouted["service_code"] is None and unrouted["service_name"] is None


def test_without_dates_a_listing_covers_the_last_90_days() -> None:
    query = requests_query(SERVICES, now=NOW)
    assert query == {
        "confidential": {"$ne": True},
        "received_at": {"$gte": NOW - timedelta(days=90), "$lte": NOW},
    }


def test_one_date_gives_the_90_days_from_or_up_to_it() -> None:
    start = NOW - timedelta(days=200)
    assert request_window(start, None, NOW) == (start, start + REQUEST_WINDOW)
    assert request_window(None, start, NOW) == (start - REQUEST_WINDOW, start)
    naive = datetime(2026, 1, 1, 8, 0)
    assert request_window(naive, None, NOW)[0] == naive.replace(tzinfo=UTC)
    edge = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
    assert request_window(edge, None, NOW)[1] == datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end"),
    [(NOW - timedelta(days=91), NOW), (NOW, NOW - timedelta(seconds=1))],
)
def test_a_span_over_90_days_or_backwards_is_refused(start: datetime, end: datetime) -> None:
    with pytest.raises(QueryRefused):
        requests_query(SERVICES, now=NOW, start_date=start, end_date=end)


def test_service_request_ids_override_every_other_argument() -> None:
    query = requests_query(
        SERVICES,
        now=NOW,
        service_request_id=" lpr-7k3m-9qx2t, LPR-AAAA-BBBBB ,",
        service_code="NOPE-nothing",
        start_date=NOW - timedelta(days=400),
        end_date=NOW,  # a span that would be refused on its own
        status="bogus",
    )
    assert query == {
        "confidential": {"$ne": True},
        "_id": {"$in": ["LPR-7K3M-9QX2T", "LPR-AAAA-BBBBB"]},
    }


def test_service_codes_and_statuses_are_comma_separated_lists() -> None:
    other = next(s for s in SERVICES.values() if s.agency != ROAD.agency)
    query = requests_query(SERVICES, now=NOW, service_code=f"{ROAD.code},{other.code}")
    assert query is not None
    assert set(query["agency"]["$in"]) == {ROAD.agency, other.agency}
    assert requests_query(SERVICES, now=NOW, service_code="NOPE-nothing") is None
    both = requests_query(SERVICES, now=NOW, status="open,closed")
    assert both is not None and "state" not in both
    closed = requests_query(SERVICES, now=NOW, status="closed")
    assert closed is not None and "closed" in closed["state"]["$in"]
    opened = requests_query(SERVICES, now=NOW, status="open")
    assert opened is not None and "closed" in opened["state"]["$nin"]
    with pytest.raises(QueryRefused):
        requests_query(SERVICES, now=NOW, status="open,pending")
