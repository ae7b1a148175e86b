"""Behaviour of the pure router: decisions, triage, re-routing, urgency."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapor.contracts import AGENCY_OUT_OF_SCOPE, ComplaintRouted, Priority
from lapor.directory import REGIONS_DIR, DirectoryError, load_directory
from services.router.domain import UNCLASSIFIED, Decision, Router
from services.router.text import UrgencyRule, load_lexicon

BANJAR = REGIONS_DIR / "banjar"
CORPUS = Path(__file__).resolve().parents[2] / "data" / "router_corpus_banjar.jsonl"


@cache
def router() -> Router:
    return Router.load(BANJAR)


def decide(text: str, exclude: frozenset[str] = frozenset()) -> Decision:
    return router().decide(text, exclude)


@pytest.mark.parametrize(
    ("text", "agency", "category"),
    [
        ("listrik padam dari pagi", "PLN", "pemadaman"),
        ("air pdam tidak mengalir", "PDAM", "pasokan_air"),
        ("ktp saya belum jadi", "DISDUKCAPIL", "ktp"),
        ("motor saya dicuri maling di depan rumah", AGENCY_OUT_OF_SCOPE, "pidana"),
    ],
)
def test_clear_complaints_are_assigned(text: str, agency: str, category: str) -> None:
    decision = decide(text)
    assert (decision.agency, decision.category, decision.triage) == (agency, category, False)
    assert decision.candidates[0] == agency
    assert decision.confidence >= 0.5


def test_most_specific_phrase_wins() -> None:
    # 'lampu mati' alone is a power cut; inside 'lampu jalan mati' it is a street light.
    assert decide("lampu mati sejak sore").agency == "PLN"
    assert decide("lampu jalan mati sejak sore").agency == "DISHUB"


def test_reasons_explain_words_urgency_and_confidence() -> None:
    decision = decide("lampu jalan mati sejak sore")
    assert decision.reasons
    assert any("DISHUB" in r and "lampu jalan" in r for r in decision.reasons)
    assert any(r.startswith("normal:") for r in decision.reasons)
    assert any(r.startswith("confidence") for r in decision.reasons)


def test_typo_is_tolerated_and_reported() -> None:
    decision = decide("bnjir sdh msk rmh")
    assert decision.agency == "BPBD"
    assert decision.priority is Priority.URGENT
    assert "read 'bnjir' as 'banjir'" in decision.reasons


def test_ambiguous_complaint_goes_to_triage_with_candidates() -> None:
    decision = decide("pdam pln")
    assert decision.triage and decision.agency is None
    assert decision.candidates == ["PDAM", "PLN"]
    assert decision.confidence < 0.5
    assert any("triage" in r for r in decision.reasons)


def test_text_without_any_subject_goes_to_triage() -> None:
    decision = decide("halo selamat pagi")
    assert decision.triage and decision.agency is None
    assert decision.candidates == [] and decision.category == UNCLASSIFIED
    assert decision.confidence == 0.0 and decision.reasons


def test_rerouting_excludes_agencies_that_refused() -> None:
    text = "jalan di perumahan griya rusak, pengembang kabur"
    first = decide(text)
    assert first.agency == "DISPERKIM"
    second = decide(text, frozenset({"DISPERKIM"}))
    assert second.agency != "DISPERKIM"
    assert "DISPERKIM" not in second.candidates
    assert any("excluded" in r and "DISPERKIM" in r for r in second.reasons)


def test_excluding_every_candidate_leaves_triage() -> None:
    decision = decide("ktp saya belum jadi", frozenset({"DISDUKCAPIL"}))
    assert decision.triage and decision.agency is None and decision.candidates == []


@pytest.mark.parametrize(
    ("text", "priority"),
    [
        ("ada kebakaran di gudang pasar", Priority.URGENT),
        ("pasien bpjs ditolak rumah sakit padahal sesak napas", Priority.URGENT),
        ("anak tetangga sering dipukuli ayahnya", Priority.URGENT),
        ("air pdam mati seminggu satu kampung", Priority.HIGH),
        ("bansos pkh belum cair 3 bulan", Priority.HIGH),
        ("jalan berlubang di depan sekolah", Priority.NORMAL),
    ],
)
def test_priority(text: str, priority: Priority) -> None:
    assert decide(text).priority is priority


def test_urgent_signal_wins_whatever_the_agency() -> None:
    decision = decide("jalan rusak, ada kecelakaan, korban luka parah")
    assert decision.agency == "PUPR"
    assert decision.priority is Priority.URGENT
    assert any(r.startswith("urgent: accident with casualties") for r in decision.reasons)


def test_hypothetical_risk_is_not_an_emergency() -> None:
    assert decide("kalau ada kebakaran hidran tidak berfungsi").priority is Priority.NORMAL
    assert decide("ada kebakaran, hidran tidak berfungsi").priority is Priority.URGENT


def test_out_of_scope_comes_with_guidance() -> None:
    decision = decide("motor saya dicuri maling di depan rumah")
    assert decision.guidance is not None and "110" in decision.guidance
    assert decide("listrik padam dari pagi").guidance is None


def test_as_json_is_complete_and_fits_the_routed_event() -> None:
    payload = decide("air pdam tidak mengalir").as_json()
    fields = "agency priority category confidence triage candidates reasons guidance"
    assert set(payload) == set(fields.split())
    assert payload["priority"] == "normal"
    json.dumps(payload)
    now = datetime.now(UTC)
    event = ComplaintRouted(
        event_id="e1",
        occurred_at=now,
        complaint_id="c1",
        region="banjar",
        received_at=now,
        **{k: v for k, v in payload.items() if k != "guidance"},
    )
    assert event.agency == "PDAM"


def test_urgency_rule_naming_an_unknown_agency_is_rejected() -> None:
    lexicon = load_lexicon(BANJAR)
    bad = UrgencyRule("x", Priority.URGENT, ("api",), agency="NOPE")
    lexicon = type(lexicon)(**{**lexicon.__dict__, "urgency": (*lexicon.urgency, bad)})
    with pytest.raises(DirectoryError, match="unknown agency 'NOPE'"):
        Router(load_directory(BANJAR), lexicon)


def test_routing_is_cheap_after_load() -> None:
    texts = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    for text in texts:  # warm the token caches
        decide(text)
    start = time.perf_counter()
    for text in texts:
        decide(text)
    per_text = (time.perf_counter() - start) / len(texts)
    assert per_text < 0.001, f"{per_text * 1000:.3f} ms per text"


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=400),
    st.frozensets(st.sampled_from(["PUPR", "PDAM", "PLN", "DINKES", AGENCY_OUT_OF_SCOPE])),
)
def test_every_decision_is_well_formed(text: str, exclude: frozenset[str]) -> None:
    decision = decide(text, exclude)
    codes = set(router().directory.codes)
    assert 0.0 <= decision.confidence <= 1.0
    assert decision.triage == (decision.agency is None)
    assert decision.agency is None or decision.agency in codes - exclude
    assert set(decision.candidates) <= codes - exclude
    assert decision.reasons
    assert decision.priority in Priority


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["banjir", "kebakaran", "kdrt", "longsor", "keracunan"]),
    st.text(max_size=80),
)
def test_an_urgent_word_keeps_a_complaint_urgent_whatever_surrounds_it(
    word: str, noise: str
) -> None:
    # Enough words in between that nothing in the noise can read as "kalau ..." before it.
    assert decide(f"{noise} . warga desa lihat terjadi {word}").priority is Priority.URGENT


def test_bapak_is_no_fire_brigade() -> None:
    # 'bpk' abbreviates 'bapak' in every SMS; as a DAMKAR alias it scored every "pak".
    decision = decide("pak jalan di desa kami rusak berlubang")
    assert decision.agency == "PUPR"
    assert not any(reason.startswith("DAMKAR") for reason in decision.reasons)


@pytest.mark.parametrize(
    "text",
    [
        "tetangga sering mukulin istrinya sampai berdarah",  # colloquial m- verb
        "banyu naik ka rumah, kakanakan kada kawa kaluar",  # Banjar: rising water
        "istri mau melahirkan, bidan tidak ada, ambulans tidak datang",
        "kabel listrik di depan rumah keluar api",
    ],
)
def test_generic_urgent_signals(text: str) -> None:
    assert decide(text).priority is Priority.URGENT, decide(text).reasons


@pytest.mark.parametrize(
    "text",
    [
        "bantuan pkh dihentikan padahal suami sudah meninggal tahun lalu",  # a past death
        "perawat membentak ibu yang mau melahirkan",  # labour with care at hand
        "perusahaan menahan ijazah pekerja",  # an employer, not a school: no exclusion
    ],
)
def test_not_urgent(text: str) -> None:
    assert decide(text).priority is not Priority.URGENT, decide(text).reasons


def test_a_word_repeated_after_its_phrase_counts_once() -> None:
    reasons = decide("fogging cuma di jalan gang, gang2 lain tidak disemprot").reasons
    disperkim = next(reason for reason in reasons if reason.startswith("DISPERKIM"))
    assert "phrase 'jalan gang'" in disperkim
    assert "keyword 'gang'" not in disperkim
