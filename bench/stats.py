"""Pure summary statistics of a benchmark run (no I/O, no clocks).

Percentiles use the nearest-rank definition: the p-th percentile of n sorted
values is the value at rank ceil(p/100 * n), so it is always an observed value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def compute_percentile(values: Sequence[float], p: float) -> float | None:
    """Return the nearest-rank ``p``-th percentile (0 < p <= 100), None if empty."""
    if not 0 < p <= 100:
        raise ValueError("percentile must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def compute_summary(values: Sequence[float]) -> dict[str, float | None]:
    """Return count, p50, p95, p99 and max of ``values`` (None where empty)."""
    return {
        "count": float(len(values)),
        "p50": compute_percentile(values, 50),
        "p95": compute_percentile(values, 95),
        "p99": compute_percentile(values, 99),
        "max": float(max(values)) if values else None,
    }


def compute_per_second(times_ms: Sequence[float], start_ms: float, seconds: int) -> list[int]:
    """Return how many of ``times_ms`` fall in each second ``[start + s, start + s + 1)``."""
    counts = [0] * max(0, seconds)
    for t in times_ms:
        s = math.floor((t - start_ms) / 1000)
        if 0 <= s < len(counts):
            counts[s] += 1
    return counts


def compute_latency_per_second(
    send_ms: Sequence[float], latency_ms: Sequence[float], start_ms: float, seconds: int
) -> list[float | None]:
    """Return the p95 latency of the transactions sent in each second (None if none)."""
    buckets: list[list[float]] = [[] for _ in range(max(0, seconds))]
    for sent, latency in zip(send_ms, latency_ms, strict=True):
        s = math.floor((sent - start_ms) / 1000)
        if 0 <= s < len(buckets):
            buckets[s].append(latency)
    return [compute_percentile(b, 95) for b in buckets]


def compute_ratio(numerator: float, denominator: float) -> float | None:
    """Return numerator / denominator, or None when the denominator is zero."""
    return None if denominator == 0 else numerator / denominator
