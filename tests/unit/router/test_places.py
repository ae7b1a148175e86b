"""The Banjar gazetteer and the place finder: names, codes, spellings, ambiguity,
and the place on the routed event, the stored complaint and its views."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lapor import places
from lapor.audience import Audience
from lapor.contracts import Channel, ComplaintReceived, ComplaintRouted, Place
from lapor.directory import REGIONS_DIR
from services.intake import domain
from services.intake.views import complaint_view
from services.router.domain import Router
from services.router.handlers import RouterDeps, handle_received
from services.router.places import PlaceFinder
from tests.factories import complaint_routed

BANJAR = REGIONS_DIR / "banjar"
NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


@cache
def finder() -> PlaceFinder:
    found = PlaceFinder.load(BANJAR)
    assert found is not None
    return found


def where(text: str) -> tuple[str | None, str | None] | None:
    place = finder().find(text)
    if place is None:
        return None
    return (
        place.kecamatan.name if place.kecamatan else None,
        place.desa.name if place.desa else None,
    )


def test_committed_gazetteer_is_what_the_package_gives() -> None:
    """places.json is generated (`python -m lapor.places write`), never edited by hand."""
    committed = (BANJAR / places.PLACES_FILE).read_text(encoding="utf-8")
    assert committed == places.render(places.from_package("63.03"))
    assert places.main(["places", "check"]) == 0


def test_banjar_has_its_twenty_kecamatan_and_their_desa() -> None:
    gazetteer = places.load_gazetteer(BANJAR)
    assert gazetteer is not None and gazetteer.code == "63.03"
    assert len(gazetteer.districts) == 20
    assert gazetteer.districts[4].code == "63.03.05"
    assert gazetteer.districts[4].name == "Martapura"
    villages = list(gazetteer.villages())
    assert len(villages) == 290
    assert all(v.code.startswith(d.code + ".") for d, v in villages)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jln rusak di ds tanipah", ("Aluh Aluh", "Tanipah")),
        ("banjir di kel. jawa mtp", ("Martapura", "Jawa")),
        ("sekolah di aluh2 besar bocor", ("Aluh Aluh", "Aluh Aluh Besar")),
        ("pdam mati di kertak hanyar 1", ("Kertak Hanyar", "Kertak Hanyar I")),
        ("jalan di sei tabuk keramat rusak", ("Sungai Tabuk", "Sungai Tabuk Keramat")),
        ("jalan di sungaitabuk berlubang", ("Sungai Tabuk", None)),
        ("puskesmas astambl tutup", ("Astambul", None)),
        ("desa biih jalan becek", ("Karang Intan", "Bi'ih")),
        ("kecamatan gambut banjir", ("Gambut", None)),
    ],
)
def test_places_are_found_despite_spelling(
    text: str, expected: tuple[str | None, str | None]
) -> None:
    assert where(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "lahan gambut terbakar dekat rumah",
        "lampu merah simpang empat mati",
        "banyak paku di jalan raya",
        "jalan baru diaspal sdh rusak",
        "mohon kirim petugas",
    ],
)
def test_everyday_words_are_not_places_without_a_marker(text: str) -> None:
    assert finder().find(text) is None


def test_a_desa_in_two_kecamatan_is_decided_by_the_named_kecamatan() -> None:
    assert where("ds pasar lama kec karang intan sampah") == ("Karang Intan", "Pasar Lama")
    assert where("ds pasar lama kec simpang empat sampah") == ("Simpang Empat", "Pasar Lama")
    assert where("ds simpang empat kec kertak hanyar gelap") == ("Kertak Hanyar", "Simpang Empat")


def test_a_desa_in_two_kecamatan_alone_is_ambiguous_with_candidates() -> None:
    place = finder().find("desa rantau bujur jalan rusak")
    assert place is not None and place.ambiguous
    assert place.kecamatan is None and place.desa is None
    assert {c.kecamatan.name for c in place.candidates} == {"Aranio", "Telaga Bauntung"}
    assert all(c.desa and c.desa.name == "Rantau Bujur" for c in place.candidates)


def test_exact_named_places_are_more_certain_than_typos() -> None:
    exact = finder().find("ds tanipah")
    typo = finder().find("ds tanipahh jalan")
    fuzzy = finder().find("puskesmas astambl tutup")
    assert exact is not None and exact.confidence == 1.0 and exact.source == "text"
    assert typo is not None and typo.desa is not None
    assert fuzzy is not None and fuzzy.confidence < exact.confidence


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def publish(self, event: Any, msg_id: str | None = None) -> bool:
        self.sent.append(event)
        return True


async def test_the_routed_event_carries_the_place() -> None:
    recorder = _Recorder()
    deps = RouterDeps(
        routers={"banjar": Router.load(BANJAR)},
        routed=recorder,  # type: ignore[arg-type]
        places={"banjar": finder()},
    )
    received = ComplaintReceived(
        event_id="received:LPR-1",
        occurred_at=NOW,
        complaint_id="LPR-1",
        region="banjar",
        channel=Channel.SMS,
        text="jalan di ds tanipah aluh2 rusak parah",
        received_at=NOW,
    )
    await handle_received(received, deps)
    routed: ComplaintRouted = recorder.sent[0]
    assert routed.place is not None and routed.place.desa is not None
    assert routed.place.desa.code.startswith("63.03.01.")
    assert routed.agency == "PUPR"


def _stored(anonymous: bool) -> dict[str, Any]:
    doc = domain.new_complaint(
        tracking_id="LPR-TEST", region="banjar", channel=Channel.SMS, text="jalan ds tanipah",
        received_at=NOW, source_key="sms:gw-1", phone_hash="h", anonymous=anonymous,
        confidential=False, truncated=False, stored_at=NOW,
    )  # fmt: skip
    place = finder().find("jalan ds tanipah")
    transition = domain.routed_transition(complaint_routed("LPR-TEST", at=NOW, place=place))
    return domain.after_change(doc, transition, NOW)


def test_the_complaint_keeps_the_place_and_shows_it_like_the_address() -> None:
    zone = ZoneInfo("Asia/Makassar")
    doc = _stored(anonymous=False)
    assert doc["place"]["desa"]["name"] == "Tanipah"
    public = complaint_view(doc, zone, Audience.PUBLIC)
    assert isinstance(public.place, Place) and public.place.kecamatan is not None
    assert public.place.kecamatan.code == "63.03.01"

    hidden = _stored(anonymous=True)
    for audience in (Audience.PUBLIC, Audience.OTHER_AGENCY):
        assert complaint_view(hidden, zone, audience).place is None
    for audience in (Audience.REPORTER, Audience.AGENCY, Audience.ADMIN):
        assert complaint_view(hidden, zone, audience).place is not None


def test_open_complaints_and_the_report_break_down_by_kecamatan() -> None:
    from lapor.report import build_report, facts_from
    from lapor.report.build import ReportData
    from services.intake.metrics import ComplaintFigures

    placed, unplaced = _stored(anonymous=False), _stored(anonymous=False)
    unplaced.pop("place")
    secret = {**placed, "confidential": True}
    figures = ComplaintFigures(NOW)
    for doc in (placed, placed, unplaced):
        figures.add(doc)
    assert figures.open_by_kecamatan == {("63.03.01",): 2, ("unknown",): 1}

    data = ReportData(
        region="banjar",
        start=None,
        end=None,
        as_of=NOW,
        counts=[],
        ratings=[],
        facts=[facts_from(d) for d in (placed, unplaced, secret)],
        breaches=None,
    )
    rows = build_report(data)["kecamatan"]
    assert [(r["kecamatan"], r["name"], r["received"]) for r in rows] == [
        ("63.03.01", "Aluh Aluh", 1),
        ("unknown", "tidak diketahui", 1),
    ]


def test_the_report_page_and_text_list_the_kecamatan() -> None:
    from lapor.report import build_report, facts_from, render_html, render_text
    from lapor.report.build import ReportData

    data = ReportData(
        region="banjar",
        start=None,
        end=None,
        as_of=NOW,
        counts=[],
        ratings=[],
        facts=[facts_from(_stored(anonymous=False))],
        breaches=None,
    )
    report = build_report(data)
    assert "<h2>Per kecamatan</h2>" in render_html(report)
    assert "63.03.01" in render_html(report) and "Aluh Aluh" in render_html(report)
    assert "63.03.01  Aluh Aluh" in render_text(report)
