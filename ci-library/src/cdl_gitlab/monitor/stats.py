"""The statistics behind drift checks: binned summaries, PSI, and SciPy's KS and chi-square.

Continuous features are summarised by quantile cut points of the reference (bins are
``(-inf, c0], (c0, c1], ..., (ck, inf)``), their counts, and a value sample for the KS test.
The population stability index is computed from the two binned distributions; KS
(:func:`scipy.stats.ks_2samp`) and chi-square (:func:`scipy.stats.chi2_contingency`) come
from SciPy, imported by the two tests only (the summaries of a package's reference statistics
need none of it; ``scipy.stats`` costs about a second to import).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PSI_EPSILON = 1e-4
"""Proportions below this are raised to it, so empty bins do not make the PSI infinite."""
QUANTILES = tuple(i / 10 for i in range(1, 10))


def rounded(values: Iterable[float], digits: int = 6) -> list[float]:
    """Finite values as floats with ``digits`` significant digits (compact JSON)."""
    return [float(f"{v:.{digits}g}") for v in values if math.isfinite(v)]


def single(values: Iterable[float] | np.ndarray) -> np.ndarray:
    """``values`` at float32 precision: how samples, cut points and live values are compared,
    so that JSON-stored reference values and live values tie exactly when they are equal."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def compact(values: np.ndarray) -> list[float]:
    """Finite values as the shortest decimals that round-trip at float32 precision."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32) if np.isfinite(v)]


def cut_points(values: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> list[float]:
    """Distinct quantile cut points of ``values`` (fewer when values repeat)."""
    if values.size == 0:
        return []
    return sorted(set(compact(np.quantile(values, quantiles))))


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of ``values`` in the bins ``(-inf, e0], (e0, e1], ..., (ek, inf)``."""
    index = np.searchsorted(single(edges), single(values), side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def summarize(values: Sequence[float] | np.ndarray, sample: np.ndarray) -> dict[str, Any]:
    """The reference summary of one continuous feature (cut points, counts, sample)."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    edges = cut_points(array)
    return {
        "n": int(array.size),
        "mean": float(array.mean()) if array.size else None,
        "std": float(array.std()) if array.size else None,
        "quantiles": dict(
            zip(
                ("p05", "p25", "p50", "p75", "p95"),
                rounded(np.quantile(array, (0.05, 0.25, 0.5, 0.75, 0.95)).tolist())
                if array.size
                else [None] * 5,
                strict=True,
            )
        ),
        "edges": edges,
        "counts": bin_counts(array, edges).tolist(),
        "sample": compact(sample),
    }


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two binned distributions (counts or proportions)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs two non-empty distributions over the same bins")
    e = np.maximum(e / e.sum(), PSI_EPSILON)
    a = np.maximum(a / a.sum(), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Thresholds:
    """When a shift counts: significant at ``p_value`` and with PSI above the limits."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    p_value: float = 0.01

    def status(self, psi_value: float, p: float) -> str:
        """``drift`` / ``warn`` when the shift is significant and large enough, else ``ok``."""
        if not p < self.p_value:
            return "ok"
        if psi_value >= self.psi_drift:
            return "drift"
        if psi_value >= self.psi_warn:
            return "warn"
        return "ok"


@dataclass
class Comparison:
    """The outcome of one reference-vs-live test."""

    test: str
    statistic: float
    p_value: float
    psi: float
    status: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "statistic": round(self.statistic, 6),
            "p_value": float(f"{self.p_value:.4g}"),
            "psi": round(self.psi, 6),
            "status": self.status,
        }


def compare_continuous(
    reference: Mapping[str, Any],
    live_sample: np.ndarray,
    live_counts: np.ndarray,
    thresholds: Thresholds,
) -> Comparison:
    """KS test of the reference sample against the live sample; PSI over the reference bins."""
    from scipy import stats

    result = stats.ks_2samp(single(reference["sample"]), single(live_sample))
    value = psi(reference["counts"], live_counts)
    p = float(result.pvalue)
    return Comparison("ks_2samp", float(result.statistic), p, value, thresholds.status(value, p))


def compare_counts(
    reference: Sequence[float], live: Sequence[float], thresholds: Thresholds
) -> Comparison:
    """Chi-square test of homogeneity (2 x k table) and PSI of two categorical distributions."""
    table = np.vstack([np.asarray(reference, dtype=np.float64), np.asarray(live, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    value = psi(reference, live)
    if table.shape[1] < 2:
        return Comparison("chi2_contingency", 0.0, 1.0, value, "ok")
    from scipy import stats

    result = stats.chi2_contingency(table, correction=False)
    p = float(result.pvalue)
    return Comparison(
        "chi2_contingency", float(result.statistic), p, value, thresholds.status(value, p)
    )


def percentiles(values: np.ndarray, points: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of ``values`` (empty: ``{}``)."""
    if values.size == 0:
        return {}
    found = np.percentile(values, points)
    return {f"p{int(p)}": round(float(v), 3) for p, v in zip(points, found, strict=True)}
