"""Pure parts of the benchmark: percentiles, latency summaries, rates, trends."""

from __future__ import annotations

import math
import random

import pytest

from bench.stats import latency_summary, percentile, ratio, slope, weighted_rate


def test_percentile_interpolates_between_ranks_like_numpy_linear() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 0) == 15.0
    assert percentile(values, 50) == 35.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_percentile_does_not_depend_on_input_order() -> None:
    values = [float(v) for v in range(1, 1001)]
    shuffled = values[:]
    random.Random(3).shuffle(shuffled)
    assert percentile(shuffled, 99) == percentile(values, 99) == pytest.approx(990.01)


def test_percentile_of_nothing_is_none_and_bad_q_is_refused() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_unanswered_messages_count_as_infinitely_late() -> None:
    answered = [float(v) for v in range(1, 100)]  # 99 answers, 1 ms … 99 ms
    summary = latency_summary(answered, unanswered=1)
    assert summary["count"] == 99 and summary["unanswered"] == 1
    assert summary["p50_ms"] == 50.5
    # The slowest percent never arrived: p99 is unknown, never an optimistic number.
    assert summary["p99_ms"] is None
    assert summary["max_ms"] == 99.0


def test_latency_summary_without_losses() -> None:
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert (summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]) == (50.5, 95.0, 99.0)
    assert summary["mean_ms"] == 50.5
    empty = latency_summary([])
    assert empty["p99_ms"] is None and empty["max_ms"] is None and empty["count"] == 0


def test_infinity_never_becomes_nan() -> None:
    assert percentile([1.0, math.inf, math.inf], 90) == math.inf


def test_slope_of_a_line_and_of_too_few_points() -> None:
    assert slope([(0.0, 10.0), (10.0, 12.0), (20.0, 14.0)]) == pytest.approx(0.2)
    assert slope([(0.0, 1.0)]) is None
    assert slope([(5.0, 1.0), (5.0, 2.0)]) is None


def test_weighted_rate_of_a_mix_of_operations() -> None:
    # 2 inserts at 100/s take 0.02 s, 1 update at 50/s takes 0.02 s: 3 ops in 0.04 s.
    assert weighted_rate({"insert": 2, "update": 1}, {"insert": 100, "update": 50}) == 75.0
    assert weighted_rate({}, {"insert": 1}) is None
    assert weighted_rate({"find": 1}, {"insert": 1}) is None


def test_ratio() -> None:
    assert ratio(30.0, 120.0) == 0.25
    assert ratio(None, 10.0) is None
    assert ratio(3.0, 0.0) is None
