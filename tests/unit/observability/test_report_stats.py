"""Percentiles and the Wilson bound, checked against values computed by hand."""

import pytest

from lapor.report.stats import median, percentile, share, wilson_interval, wilson_lower


def test_percentile_interpolates_linearly() -> None:
    values = [24.0, 48.0, 96.0, 120.0, 480.0]
    assert median(values) == 96.0
    # position (5 - 1) * 0.9 = 3.6: 120 + 0.6 * (480 - 120)
    assert percentile(values, 90) == pytest.approx(336.0)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([7.0], 90) == 7.0
    assert percentile(values, 0) == 24.0 and percentile(values, 100) == 480.0


def test_percentile_ignores_input_order_and_handles_empty() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([]) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (2, 2, 0.3424, 1.0),
        (90, 100, 0.8256, 0.9448),
        (4, 6, 0.3000, 0.9032),
    ],
)
def test_wilson_interval(successes: int, trials: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, trials)
    assert interval is not None
    assert interval[0] == pytest.approx(low, abs=1e-4)
    assert interval[1] == pytest.approx(high, abs=1e-4)


def test_wilson_ranks_small_perfect_records_below_large_good_ones() -> None:
    two_of_two = wilson_lower(2, 2)
    ninety_of_hundred = wilson_lower(90, 100)
    assert two_of_two is not None and ninety_of_hundred is not None
    assert two_of_two < ninety_of_hundred


def test_wilson_and_share_without_trials() -> None:
    assert wilson_interval(0, 0) is None
    assert share(1, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
