"""Stored-data ratios use only settled measurements."""

from __future__ import annotations

from typing import Any

from bench.run import Run


def _ratios(points: dict[str, Any]) -> Run:
    run = Run.__new__(Run)  # only the result bookkeeping is exercised
    run.result = {"scale": points}
    run.reasons = {}
    run._scale_ratios()
    return run


def _point(per_s: float, refresh_s: float | None) -> dict[str, Any]:
    return {"throughput_per_s": per_s, "first_refresh_s": refresh_s}


def test_a_settled_size_is_compared_with_the_settled_10k() -> None:
    run = _ratios({"10k": _point(14.0, 2.0), "1m": _point(12.6, 900.0)})
    assert run.result["scale_ratio_1m_vs_10k"] == 0.9
    assert "scale_ratio_100k_vs_10k" in run.reasons  # not requested


def test_a_size_whose_first_refresh_never_finished_gives_no_ratio() -> None:
    run = _ratios({"10k": _point(14.0, 2.0), "1m": _point(7.0, None)})
    assert "scale_ratio_1m_vs_10k" not in run.result
    assert "1m stored did not finish" in run.reasons["scale_ratio_1m_vs_10k"]


def test_an_unsettled_base_gives_no_ratio_either() -> None:
    run = _ratios({"10k": _point(14.0, None), "100k": _point(19.0, 30.0)})
    assert "10k stored did not finish" in run.reasons["scale_ratio_100k_vs_10k"]
