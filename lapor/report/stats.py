"""Small statistics for the report, in plain Python (the database cannot do them)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# 95% two-sided normal quantile.
Z95 = 1.959963984540054


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between order statistics.

    The same definition as numpy's default ("linear", Hyndman-Fan type 7), so a
    figure can be checked with a spreadsheet's PERCENTILE.INC.
    """
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None without trials."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    denominator = 1 + z2 / trials
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def wilson_lower(successes: int, trials: int, z: float = Z95) -> float | None:
    interval = wilson_interval(successes, trials, z)
    return interval[0] if interval else None


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
