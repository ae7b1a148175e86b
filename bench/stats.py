"""Pure statistics of a run: percentiles, latency summaries, trends."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks.

    Same definition as numpy's default ("linear"), so figures can be checked
    with any common tool; None for no values.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high or math.isinf(ordered[high]):
        # Also keeps infinities (unanswered messages) from turning into NaN.
        return ordered[high] if rank > low else ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(
    latencies_ms: Sequence[float], unanswered: int = 0
) -> dict[str, float | int | None]:
    """count, p50, p95, p99, max and mean of latencies in milliseconds.

    Messages that never got an answer count as infinitely late: a percentile
    that falls among them is None (unknown, larger than any answer seen), so
    dropping the slowest messages can never make a percentile look better.
    """
    count = len(latencies_ms)
    padded = [*latencies_ms, *([math.inf] * unanswered)]

    def pct(q: float) -> float | None:
        value = percentile(padded, q)
        return None if value is None or math.isinf(value) else round(value, 1)

    return {
        "count": count,
        "unanswered": unanswered,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": _round(max(latencies_ms)) if count else None,
        "mean_ms": _round(sum(latencies_ms) / count) if count else None,
    }


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope dy/dx of (x, y) points; None below two distinct x."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to four significant digits (ratios here span 1e-4..1e1)."""
    if numerator is None or not denominator:
        return None
    return float(f"{numerator / denominator:.4g}")


def weighted_rate(counts: dict[str, float], rates: dict[str, float]) -> float | None:
    """Operations per second of a mix of operations, each at its own rate.

    With n_k operations of kind k at r_k per second, the mix takes
    sum(n_k / r_k) seconds for sum(n_k) operations.
    """
    total = sum(n for n in counts.values() if n > 0)
    if total == 0:
        return None
    seconds = 0.0
    for kind, n in counts.items():
        if n <= 0:
            continue
        rate = rates.get(kind)
        if not rate:
            return None
        seconds += n / rate
    return total / seconds


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
