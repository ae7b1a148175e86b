"""The agency report on hand-made complaints: every figure checked by hand."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.report import Labels, build_report, facts_from, render_html, render_text
from tests.unit.observability import scenario


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    data = scenario.report_data(scenario.complaints(), with_breaches=True)
    labels = Labels(agencies={"PUPR": "Dinas PUPR"}, categories={"jalan": "Jalan rusak"})
    return build_report(data, labels=labels)


def _agency(report: dict[str, Any], code: str) -> dict[str, Any]:
    return next(row for row in report["agencies"] if row["agency"] == code)


def _category(report: dict[str, Any], category: str) -> dict[str, Any]:
    return next(row for row in report["categories"] if row["category"] == category)


def test_facts_measure_from_the_assignment_and_from_receipt() -> None:
    p5 = facts_from(next(d for d in scenario.complaints() if d["_id"] == "P5"))
    assert p5.first_response_s == 3600  # assigned at 2 h, acknowledged at 3 h
    assert p5.answer_s == 24 * 3600  # the first answer counts, not the one after reopening
    assert p5.reopened and p5.concluded and p5.answered_on_time()


def test_facts_use_the_assignment_after_a_reroute() -> None:
    doc = scenario.complaint(
        "X",
        "DLH",
        "sampah",
        [(1, "assigned"), (5, "received"), (6, "assigned"), (8, "in_progress")],
    )
    assert facts_from(doc).first_response_s == 2 * 3600


def test_facts_accept_naive_timestamps_as_utc() -> None:
    doc = scenario.complaint("N", "PUPR", "jalan", [(1, "assigned"), (2, "in_progress")])
    doc["received_at"] = doc["received_at"].replace(tzinfo=None)
    for entry in doc["history"]:
        entry["at"] = entry["at"].replace(tzinfo=None)
    assert facts_from(doc).first_response_s == 3600


def test_pupr_figures(report: dict[str, Any]) -> None:
    pupr = _agency(report, "PUPR")
    assert pupr["name"] == "Dinas PUPR"
    assert pupr["received"] == 6 and pupr["confidential"] == 0
    assert pupr["time_to_first_response"] == {"n": 5, "median_hours": 2.0, "p90_hours": 16.0}
    assert pupr["time_to_answer"] == {"n": 5, "median_hours": 96.0, "p90_hours": 336.0}
    compliance = pupr["answered_within_deadline"]
    assert (compliance["due"], compliance["on_time"], compliance["share"]) == (6, 4, 0.6667)
    assert compliance["wilson_lower"] == pytest.approx(0.3000, abs=1e-4)
    assert pupr["breaches"] == {
        "total": 3,
        "by_clock": {"routing": 0, "first_response": 1, "answer": 2},
    }
    assert pupr["rating"] == {"n": 2, "average": 4.5}
    assert pupr["reopen"] == {"concluded": 5, "reopened": 1, "rate": 0.2}


def test_ranking_uses_the_wilson_bound_and_a_minimum_volume(report: dict[str, Any]) -> None:
    assert report["ranking"] == ["DISDUKCAPIL", "PUPR"]
    assert _agency(report, "DISDUKCAPIL")["rank"] == 1
    dinkes = _agency(report, "DINKES")
    # 2 of 2 on time is a perfect share, but too little evidence to be ranked.
    assert dinkes["answered_within_deadline"]["share"] == 1.0
    assert dinkes["rank"] is None and "fewer than 5" in dinkes["not_ranked_because"]


def test_confidential_complaints_count_only(report: dict[str, Any]) -> None:
    dp3a = _agency(report, "DP3A")
    assert dp3a["received"] == 1 and dp3a["confidential"] == 1
    assert dp3a["time_to_answer"]["n"] == 0
    assert dp3a["answered_within_deadline"]["due"] == 0
    assert dp3a["rating"]["n"] == 0
    assert "kekerasan_anak" not in {row["category"] for row in report["categories"]}
    assert report["totals"]["received"] == 14 and report["totals"]["confidential"] == 1


def test_rejected_complaints_are_not_received(report: dict[str, Any]) -> None:
    assert report["totals"]["rejected"] == 1
    assert "UNASSIGNED" not in {row["agency"] for row in report["agencies"]}


def test_categories_and_weak_services(report: dict[str, Any]) -> None:
    jalan = _category(report, "jalan")
    assert jalan["label"] == "Jalan rusak" and jalan["agencies"] == ["PUPR"]
    assert jalan["received"] == 6 and jalan["breaches"]["total"] == 3
    # Region: 11 of 13 on time; jalan (4 of 6) is below, ktp (5 of 5) is not,
    # puskesmas (2 of 2) is too small to judge.
    assert report["totals"]["answered_within_deadline"]["share"] == round(11 / 13, 4)
    assert [w["category"] for w in report["weak_services"]] == ["jalan"]
    assert report["weak_services"][0]["missed"] == 2


def test_breaches_fall_back_to_the_complaints_deadlines() -> None:
    data = scenario.report_data(scenario.complaints(), with_breaches=False)
    report = build_report(data)
    assert report["method"]["breaches_source"] == "deadlines"
    assert _agency(report, "PUPR")["breaches"]["by_clock"] == {
        "routing": 0,
        "first_response": 1,
        "answer": 2,
    }


def test_an_answer_not_yet_due_is_not_judged() -> None:
    doc = scenario.complaint("F", "PUPR", "jalan", [(1, "assigned")])
    facts = facts_from(doc)
    before_deadline = scenario.T0 + timedelta(days=3)
    assert not facts.answer_judgeable(before_deadline)
    assert facts.answer_judgeable(scenario.AS_OF) and not facts.answered_on_time()


def test_report_is_json_and_carries_no_text_ids_or_reporters(report: dict[str, Any]) -> None:
    text = json.dumps(report)
    for secret in ("teks aduan", "detail-pribadi-xyz", "komentar", "hash-", '"P1"', "S1"):
        assert secret not in text


def test_html_is_self_contained_with_charts(report: dict[str, Any]) -> None:
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    ids = re.findall(r'<svg id="([\w-]+)"', page)
    assert ids == ["chart-compliance", "chart-received", "chart-answer-time", "chart-weak"]
    # No external asset: nothing to fetch, nothing to run.
    assert not re.search(r"(src|href)=|<script|@import|url\(", page)
    for secret in ("teks aduan", "detail-pribadi-xyz", "komentar", "hash-"):
        assert secret not in page


def test_html_escapes_names() -> None:
    data = scenario.report_data(scenario.complaints(), with_breaches=True)
    labels = Labels(agencies={"PUPR": "<script>x</script>"}, categories={"jalan": "a & b"})
    page = render_html(build_report(data, labels=labels))
    assert "<script>x" not in page and "&lt;script&gt;" in page and "a &amp; b" in page


def test_empty_report_renders() -> None:
    data = scenario.report_data([], with_breaches=False)
    report = build_report(data)
    assert report["agencies"] == [] and report["ranking"] == []
    assert render_html(report).count("<svg") == 4
    assert "none" in render_text(report)


def test_text_lists_agencies_in_rank_order(report: dict[str, Any]) -> None:
    lines = render_text(report).splitlines()
    rows = [line.split()[1] for line in lines if re.match(r"\s+(\d+|-)\s+[A-Z]", line)]
    assert rows[:2] == ["DISDUKCAPIL", "PUPR"]
    assert "Jalan rusak" in render_text(report)


def test_period_is_reported() -> None:
    data = scenario.report_data(scenario.complaints(), with_breaches=True)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    report = build_report(dataclasses.replace(data, start=start, end=start + timedelta(days=31)))
    assert report["period"] == {"from": start.isoformat(), "to": "2026-04-01T00:00:00+00:00"}


def test_withdrawals_are_counted_and_are_no_answers() -> None:
    withdrawn = scenario.complaint(
        "W", "PUPR", "jalan", [(1, "assigned"), (2, "in_progress"), (30, "closed")]
    )
    withdrawn.update(outcome="withdrawn", closed_at=scenario.T0 + timedelta(hours=30))
    answered = scenario.complaint(
        "A", "PUPR", "jalan", [(1, "assigned"), (2, "in_progress"), (30, "closed")]
    )
    report = build_report(scenario.report_data([withdrawn, answered], with_breaches=False))
    pupr = _agency(report, "PUPR")
    assert pupr["withdrawn"] == 1 and report["totals"]["withdrawn"] == 1
    assert pupr["time_to_answer"]["n"] == 1  # the withdrawal answered nothing
    assert "withdrawn 1" in render_text(report)
    assert "Dicabut pelapor" in render_html(report)
