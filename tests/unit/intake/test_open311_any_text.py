"""Open311 answers stay well-formed for any stored text.

Whatever a complaint holds (control characters from a gateway, U+FFFE, lone
surrogates, markup), `requests.xml` must parse for every client, and the JSON
must carry the text exactly. Characters XML 1.0 cannot carry come out as
U+FFFD; everything else comes back unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lapor.audience import mask_contacts
from lapor.directory import load_directory
from services.intake.georeport import (
    Service,
    document_xml,
    error,
    request_json,
    service_definition_json,
    service_json,
    to_xml,
)
from services.intake.open311 import Open311Context, build_router
from tools.devstack import ROOT

pytestmark = [pytest.mark.security]

DIRECTORY = load_directory(ROOT / "data" / "regions" / "banjar")
NAMES = {a.code: a.name for a in DIRECTORY.agencies}
WITA = ZoneInfo("Asia/Makassar")
NOW = datetime.now(UTC)

# XML 1.0's Char production (www.w3.org/TR/xml/#charsets), written out here rather
# than taken from the code under test.
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# What breaks XML or tempts a writer to get it wrong, drawn often.
TRICKY = [
    *(chr(c) for c in range(0x20)),
    "\x7f", "\x85", "\ud800", "\udfff", "\ud83d", "\ude00", "\ufffe", "\uffff", "\ufffd",
    "\U0001fffe", "\U0010ffff", "<", ">", "&", "'", '"', "]]>", "<!--", "-->", "&amp;",
    "&#0;", "&#xD800;", "<![CDATA[", "<?xml", "\r\n", " ", "\u2028", "é", "😀",
]  # fmt: skip
ANY_CHAR = st.characters(exclude_categories=())  # surrogates included
ANY_TEXT = st.lists(st.one_of(st.sampled_from(TRICKY), ANY_CHAR), max_size=30).map("".join)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# What can be stored at all: BSON (and pydantic's JSON) refuse lone surrogates.
STORABLE_TEXT = st.lists(
    st.one_of(
        st.sampled_from([t for t in TRICKY if not _has_surrogate(t)]),
        st.characters(codec="utf-8"),  # no lone surrogates, which newer versions include
    ),
    max_size=30,
).map("".join)
FAST = settings(max_examples=300, deadline=None)


def xml_text(text: str) -> str:
    """What an XML parser must read back for a field that held `text`."""
    return NOT_XML_CHAR.sub("\ufffd", text)


def parsed(document: bytes) -> ET.Element:
    # The declaration says UTF-8: the bytes must be valid UTF-8, not only parse.
    document.decode("utf-8")
    return ET.fromstring(document)


@given(
    name=ANY_TEXT,
    description=ANY_TEXT,
    group=ANY_TEXT,
    keywords=st.lists(ANY_TEXT, max_size=3),
    code=ANY_TEXT,
)
@FAST
def test_the_service_list_parses_for_any_name(
    name: str, description: str, group: str, keywords: list[str], code: str
) -> None:
    service = Service(code, name, description, group, tuple(keywords), "PUPR", "jalan")
    root = parsed(to_xml("services", "service", [service_json(service)]))
    item = root.find("service")
    assert item is not None
    assert item.findtext("service_code") == xml_text(code)
    assert item.findtext("service_name") == xml_text(name)
    assert item.findtext("description") == xml_text(description)
    assert item.findtext("group") == xml_text(group)
    assert item.findtext("keywords") == xml_text(",".join(keywords))
    definition = parsed(document_xml("service_definition", service_definition_json(service)))
    assert definition.findtext("service_code") == xml_text(code)


@given(description=ANY_TEXT, name=ANY_TEXT, key=ANY_TEXT)
@FAST
def test_a_service_definition_with_attributes_parses_for_any_text(
    description: str, name: str, key: str
) -> None:
    attribute = {
        "variable": True, "code": key, "datatype": "singlevaluelist", "required": False,
        "datatype_description": description, "order": 1, "description": description,
        "values": [{"key": key, "name": name}],
    }  # fmt: skip
    root = parsed(
        document_xml("service_definition", {"service_code": key, "attributes": [attribute]})
    )
    assert root.findtext("attributes/attribute/description") == xml_text(description)
    assert root.findtext("attributes/attribute/values/value/name") == xml_text(name)
    assert root.findtext("attributes/attribute/values/value/key") == xml_text(key)


@pytest.mark.parametrize(
    "text",
    [
        "Jl. A. Yani <No. 5> & \"Pasar\" 'Lama' ]]> <!-- -->",
        "baris satu\r\nbaris dua\rtiga\n\tempat  spasi ",
        "got\u00f3 \u0113 \U0001f600 \u2028 \x7f\x85 \ufffd \U0010ffff",
    ],
)
def test_text_xml_can_carry_comes_back_exactly(text: str) -> None:
    assert xml_text(text) == text
    item = parsed(
        to_xml("service_requests", "request", [{"description": text, "address": text}])
    ).find("request")
    assert item is not None
    assert item.findtext("description") == text and item.findtext("address") == text


@given(text=ANY_TEXT)
@FAST
@example(text="\x00")
def test_an_error_document_parses_for_any_message(text: str) -> None:
    answer = error("xml", 404, f"unknown service_code {text}")
    root = parsed(bytes(answer.body))
    assert root.findtext("error/description") == xml_text(f"unknown service_code {text}")


@given(
    text=ANY_TEXT,
    address=ANY_TEXT,
    outcome=ANY_TEXT,
    agency=ANY_TEXT,
    agency_name=ANY_TEXT,
    service_name=ANY_TEXT,
    tracking_id=ANY_TEXT,
)
@FAST
def test_a_request_parses_for_any_stored_text(
    text: str,
    address: str,
    outcome: str,
    agency: str,
    agency_name: str,
    service_name: str,
    tracking_id: str,
) -> None:
    service = Service(f"{agency}-jalan", service_name, "", "", (), agency, "jalan")
    doc = complaint(tracking_id, text, address, outcome, agency)
    row = request_json(doc, WITA, {agency: agency_name}, {service.code: service})
    item = parsed(to_xml("service_requests", "request", [row])).find("request")
    assert item is not None
    assert item.findtext("service_request_id") == xml_text(tracking_id)
    assert item.findtext("description") == xml_text(text)
    assert item.findtext("address") == xml_text(address)
    assert item.findtext("status_notes") == xml_text(row["status_notes"])
    # Without an agency, the request has no agency, service name or code (empty elements).
    assert item.findtext("agency_responsible") == (xml_text(agency_name) if agency else "")
    assert item.findtext("service_name") == (xml_text(service_name) if agency else "")
    assert item.findtext("service_code") == (xml_text(f"{agency}-jalan") if agency else "")


def complaint(
    tracking_id: str, text: str, address: str, outcome: str, agency: str
) -> dict[str, Any]:
    return {
        "_id": tracking_id,
        "state": "closed",
        "outcome": outcome,
        "agency": agency,
        "category": "jalan",
        "text": text,
        "received_at": NOW - timedelta(days=2),
        "updated_at": NOW - timedelta(days=1),
        "deadlines": {"answer": NOW + timedelta(days=12)},
        "submission": {"location": {"lat": -3.41, "lon": 114.85, "address": address}},
    }


class Store:
    """The repository's read side, holding one complaint."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {}

    async def get(self, tracking_id: str) -> dict[str, Any] | None:
        return self.doc

    async def search(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return [self.doc]


STORE = Store()


async def _no_submit(submission: Any) -> dict[str, Any]:
    raise AssertionError("nothing is submitted here")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(
        build_router(
            Open311Context(
                repository=lambda: STORE,
                submit=_no_submit,
                directories={"banjar": DIRECTORY},
                zones={"banjar": WITA},
                default_region="banjar",
            )
        )
    )
    with TestClient(app) as http:
        yield http


@given(
    text=STORABLE_TEXT,
    address=STORABLE_TEXT,
    outcome=STORABLE_TEXT,
    agency=STORABLE_TEXT,
    tracking_id=STORABLE_TEXT,
)
@settings(FAST, max_examples=100)  # three HTTP round trips each; the writer had 300 above
def test_the_served_listing_parses_in_xml_and_keeps_the_text_in_json(
    client: TestClient, text: str, address: str, outcome: str, agency: str, tracking_id: str
) -> None:
    STORE.doc = complaint(tracking_id, text, address, outcome, agency)
    responsible = NAMES.get(agency, agency) if agency else None
    for path in ("/open311/v2/requests.xml", "/open311/v2/requests/LPR-1.xml"):
        answer = client.get(path)
        assert answer.status_code == 200
        item = parsed(answer.content).find("request")
        assert item is not None
        assert item.findtext("service_request_id") == xml_text(tracking_id)
        # Public: phone numbers and e-mail addresses masked (lapor.audience).
        assert item.findtext("description") == xml_text(mask_contacts(text))
        assert item.findtext("address") == xml_text(mask_contacts(address))
        assert item.findtext("agency_responsible") == xml_text(responsible or "")
    # JSON escapes every control character: the text comes back exactly.
    (row,) = json.loads(client.get("/open311/v2/requests.json").content)
    assert (row["service_request_id"], row["description"], row["address"]) == (
        tracking_id,
        mask_contacts(text),
        mask_contacts(address),
    )
    assert row["agency_responsible"] == responsible and outcome in row["status_notes"]


@pytest.mark.parametrize("code", ["\x01", "\x00<&", "\uffff", "\ufffe", "a\x1bb"])
def test_an_unknown_service_code_in_the_path_is_answered_with_well_formed_xml(
    client: TestClient, code: str
) -> None:
    answer = client.get(f"/open311/v2/services/{quote(code)}.xml")
    assert answer.status_code == 404
    description = parsed(answer.content).findtext("error/description")
    assert description == xml_text(f"unknown service_code {code}")
