"""Statistics the benchmarks report: nearest-rank percentiles, summaries,
medians with their min-max, and Zipf weights for the data generators."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p * len(ordered) / 100) - 1))
    return ordered[k]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, min, p50, p95, p99 and max ({"n": 0} for no values)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
    }


def median_range(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(median, min, max) of repeated runs; None for no values."""
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def ms(seconds: float | None, digits: int = 1) -> str:
    """Seconds as milliseconds for a report ("-" when not measured)."""
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def zipf(n: int, s: float = 0.7) -> list[float]:
    """Weights 1 / rank**s for n items (a few large, many small)."""
    return [1.0 / (i + 1) ** s for i in range(n)]
