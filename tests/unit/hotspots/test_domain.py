"""The grouping rules, pure."""

from dataclasses import replace
from datetime import timedelta

from lapor.contracts.hotspots import HotspotState
from services.hotspots import domain
from services.hotspots.domain import Form, Join, Member, Rules
from tests.unit.hotspots.fakes import FLOODED_ROAD, GAMBUT, GAMBUT_BARAT, SUNGAI_KUPANG, T0


def member(cid: str, **changes: object) -> Member:
    base = Member(
        complaint_id=cid,
        region="banjar",
        agency="PUPR",
        received_at=T0,
        keywords=FLOODED_ROAD,
        kecamatan=GAMBUT,
        desa=GAMBUT_BARAT,
        reporter=f"r-{cid}",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


RULES = Rules()


def test_similar_texts_score_high_and_fillers_do_not_count() -> None:
    assert domain.similarity(["jalan", "rusak", "lubang"], ["jalan", "lobang", "rusak"]) == 100
    assert domain.similarity(["tolong", "tidak", "jalan"], ["tolong", "tidak", "sampah"]) == 0
    # One shared word is not a shared problem.
    assert domain.similarity(["jalan", "rusak"], ["jalan", "gelap", "lampu"]) == 0
    assert domain.similarity(["lampu", "padam"], ["pju", "mati"]) == 100


def test_same_problem_same_place_different_people_within_the_window() -> None:
    a, b = member("A"), member("B", received_at=T0 + timedelta(days=2))
    assert domain.related(a, b, RULES) is not None


def test_what_keeps_complaints_apart() -> None:
    a = member("A")
    assert domain.related(a, member("B", reporter="r-A"), RULES) is None  # same person
    assert domain.related(a, member("B", agency="DLH"), RULES) is None
    assert domain.related(a, member("B", desa=SUNGAI_KUPANG), RULES) is None
    assert domain.related(a, member("B", received_at=T0 + timedelta(days=8)), RULES) is None
    assert domain.related(a, member("B", keywords=("sampah", "numpuk", "bau")), RULES) is None
    assert domain.related(a, member("B", confidential=True), RULES) is None
    assert domain.related(a, member("B", agency=None, triage=True), RULES) is None
    assert domain.related(a, member("B", kecamatan=None, desa=None), RULES) is None


def test_a_text_naming_only_the_kecamatan_matches_any_of_its_desa() -> None:
    assert domain.related(member("A"), member("B", desa=None), RULES) is not None


def test_decide_joins_an_open_hotspot_before_forming_a_new_one() -> None:
    hotspot = domain.form("HS-B", member("A"), member("B"), T0)
    a, b = member("A", hotspot_id="HS-B"), member("B", hotspot_id="HS-B")
    loose = member("C", keywords=("jalan", "banjir", "rendam"))
    grouping = domain.decide(member("D"), [a, b, loose], {"HS-B": hotspot}, RULES)
    assert isinstance(grouping, Join) and grouping.hotspot_id == "HS-B"
    answered = replace(hotspot, state=HotspotState.ANSWERED)
    grouping = domain.decide(member("D"), [a, b, loose], {"HS-B": answered}, RULES)
    assert isinstance(grouping, Form) and grouping.partner == "C"


def test_a_reporter_already_in_the_hotspot_does_not_join_it_again() -> None:
    hotspot = domain.form("HS-B", member("A"), member("B"), T0)
    a = member("A", hotspot_id="HS-B")
    assert domain.decide(member("D", reporter="r-A"), [a], {"HS-B": hotspot}, RULES) is None


def test_kept_apart_members_are_left_alone() -> None:
    assert domain.decide(member("D"), [member("A", kept_apart=True)], {}, RULES) is None
    assert domain.decide(member("D", kept_apart=True), [member("A")], {}, RULES) is None


def test_below_two_members_a_hotspot_is_dissolved() -> None:
    hotspot = domain.form("HS-B", member("A"), member("B"), T0)
    assert domain.with_members(hotspot, [member("A")], T0).state is HotspotState.DISSOLVED
    assert not domain.with_members(hotspot, [member("A")], T0).shown


def test_the_same_answer_again_is_the_same_round() -> None:
    hotspot = domain.form("HS-B", member("A"), member("B"), T0)
    assert domain.answer_round(hotspot, "sudah diperbaiki", "budi") == (1, True)
    answered = replace(hotspot, answers=(domain.Answer(1, "sudah diperbaiki", "budi", T0),))
    assert domain.answer_round(answered, "sudah diperbaiki", "budi") == (1, False)
    assert domain.answer_round(answered, "jalan ditimbun", "budi") == (2, True)
