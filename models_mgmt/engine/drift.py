"""Drift statistics: is the recent data (or the model's output, or its accuracy) still like training?

Pure numpy/scipy, no Django. Three views of drift:

* **data drift, per feature** -- the population stability index (`psi`) on the training deciles,
  the two-sample Kolmogorov-Smirnov test (`ks`), and the Wasserstein distance scaled by the
  reference's standard deviation (`wasserstein`), so "0.5" means half a training sigma of shift.
* **prediction drift** -- the same statistics on the model's output probabilities.
* **performance drift** -- live accuracy against validation accuracy, one-sided two-proportion
  z-test (`accuracy_drop_test`): is live significantly *worse*?

Why the KS p-value uses an *effective* sample size: daily features are strongly autocorrelated
(a 60-bar volatility changes slowly, so 120 consecutive values hold about as much information as
a handful of independent draws). The plain KS test treats them as independent and calls even two
calm halves of 2005 different. `effective_size` shrinks n by the lag-1 autocorrelation
(n(1-r)/(1+r)), and the p-value comes from the asymptotic Kolmogorov distribution at that n.

Levels of a feature (`column_drift`), never `stable` while PSI is at or over the alert level:

* `drift` -- PSI >= alert and the move is significant (KS at the effective size), or PSI >= alert
  and larger than anything the feature moved between windows of the same length *inside the
  training history* (`history_psi`: the regime the model already saw; needs at least
  `HISTORY_MIN_WINDOWS` windows, so a short reference is not judged against itself);
* `shifted` -- PSI >= alert, but neither significant at the effective sample size nor beyond the
  training history's range: a large move the data cannot show to be more than noise (the report
  says so, with the effective n and the history's range);
* `warning` -- PSI >= warn and significant;
* `stable` -- otherwise.

The window drifts when a share of the features drift (`verdict`); `shifted` features are listed
but do not by themselves raise the verdict. On the S&P 500 this calls 2005 vs Sep-Dec 2008 a
drift, 2003-2007 vs Sep-Dec 2008 a drift through the history rule as well, and no half of any
calm year against the other (tests/monitoring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported

# The standard library's normal distribution: live metrics need only its cdf and quantile, and
# importing scipy.stats for them cost the first GET metrics of a process seconds (issue 11.11).
STANDARD_NORMAL = NormalDist()
PSI_EPSILON = 1e-4  # an empty bin counts as this share, so PSI stays finite
HISTORY_MIN_WINDOWS = 4  # training-history windows needed before a PSI is judged against them
LEVELS = ("stable", "warning", "shifted", "drift")


@dataclass(frozen=True)
class Thresholds:
    psi_warn: float = 0.1  # the industry's "watch" level
    psi_alert: float = 0.25  # "significant shift"
    ks_pvalue: float = 0.01
    feature_share: float = 0.15  # share of drifted features that makes the window drift (3 of 17)
    performance_alpha: float = 0.05
    min_samples: int = 30  # fewer recent rows (or resolved predictions) tell nothing


@dataclass(frozen=True)
class ColumnDrift:
    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    wasserstein: float  # in reference standard deviations
    reference_mean: float
    current_mean: float
    level: str  # see LEVELS
    effective_n: float = 0.0  # the KS test's effective sample size (both samples combined)
    history_psi_max: float | None = None  # the largest PSI between training-history windows (None: too few)
    history_windows: int = 0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "psi": round(self.psi, 6),
            "ks": {
                "statistic": round(self.ks_statistic, 6),
                "pValue": float(f"{self.ks_pvalue:.6g}"),
                "effectiveN": round(self.effective_n, 1),
            },
            "wasserstein": round(self.wasserstein, 6),
            "referenceMean": float(f"{self.reference_mean:.6g}"),
            "currentMean": float(f"{self.current_mean:.6g}"),
            "history": {
                "psiMax": round(self.history_psi_max, 6) if self.history_psi_max is not None else None,
                "windows": self.history_windows,
            },
            "level": self.level,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Verdict:
    level: str  # "stable" | "warning" | "drift"
    score: float  # share of columns that drift, 0..1
    drifted: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)
    shifted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(values: Any) -> np.ndarray:
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def decile_edges(reference: Any, bins: int = 10) -> np.ndarray:
    """Inner bin edges from the reference's quantiles (the outer bins reach to -inf and +inf)."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    values = _finite(reference)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    return edges


def psi_from_histogram(edges: Any, reference_counts: Any, current: Any) -> float:
    """PSI of `current` against a stored reference histogram (`edges` as stored, n+1 values).

    The first and last bins are opened to minus and plus infinity so new extremes still count.
    """
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    edges_arr = np.asarray(edges, dtype=np.float64)
    ref = np.asarray(reference_counts, dtype=np.float64)
    values = _finite(current)
    if len(values) == 0 or ref.sum() == 0:
        return float("nan")
    inner = edges_arr[1:-1]
    current_counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(ref))[: len(ref)]
    expected = np.maximum(ref / ref.sum(), PSI_EPSILON)
    actual = np.maximum(current_counts / current_counts.sum(), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi(reference: Any, current: Any, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`, on the reference's deciles."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    ref = _finite(reference)
    edges = decile_edges(ref, bins)
    if len(edges) < 2:
        edges = np.array([ref[0] - 0.5, ref[0] + 0.5]) if len(ref) else np.array([0.0, 1.0])
    inner = edges[1:-1]
    counts = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=len(edges) - 1)
    return psi_from_histogram(edges, counts, current)


def effective_size(values: Any) -> float:
    """n(1-r)/(1+r) with r the lag-1 autocorrelation (clipped to [0, 0.999]); at least 2."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    x = _finite(values)
    if len(x) < 3 or float(x.std()) < 1e-12:
        return float(len(x))
    r = float(np.corrcoef(x[:-1], x[1:])[0, 1])
    r = min(max(r if math.isfinite(r) else 0.0, 0.0), 0.999)
    return max(2.0, len(x) * (1 - r) / (1 + r))


def ks(reference: Any, current: Any, *, autocorrelated: bool = True) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value.

    With `autocorrelated` the p-value is taken at the effective sizes of both samples (see the
    module docstring); otherwise scipy's `ks_2samp` p-value for independent draws.
    """
    from scipy.stats import ks_2samp, kstwobign  # heavy: scipy loads when drift is computed

    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan"), float("nan")
    result = ks_2samp(ref, cur)
    if not autocorrelated:
        return float(result.statistic), float(result.pvalue)
    n = combined_effective_size(ref, cur)
    return float(result.statistic), float(kstwobign.sf(float(result.statistic) * math.sqrt(n)))


def combined_effective_size(reference: Any, current: Any) -> float:
    """n1*n2/(n1+n2) at the effective sizes: the n the KS p-value is taken at."""
    n1, n2 = effective_size(reference), effective_size(current)
    return n1 * n2 / (n1 + n2) if n1 + n2 else 0.0


def history_psi(
    reference: Any, window: int, histogram: tuple[Sequence[float], Sequence[int]] | None = None
) -> list[float]:
    """PSI of each consecutive window of the reference (in its order, which must be chronological)
    against the whole reference: how far the feature moves between windows of the regime the model
    already saw. Windows are as long as the compared window, at most half the reference."""
    ref = _finite(reference)
    size = min(int(window), len(ref) // 2)
    if size < 2:
        return []
    chunks = [ref[i * size : (i + 1) * size] for i in range(len(ref) // size)]
    return [psi_from_histogram(*histogram, chunk) if histogram else psi(ref, chunk) for chunk in chunks]


def wasserstein(reference: Any, current: Any) -> float:
    """Earth mover's distance between the samples, in units of the reference's standard deviation."""
    from scipy.stats import wasserstein_distance  # heavy: scipy loads when drift is computed

    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    scale = float(ref.std())
    return float(wasserstein_distance(ref, cur) / (scale if scale > 1e-12 else 1.0))


def column_drift(
    name: str,
    reference: Any,
    current: Any,
    thresholds: Thresholds,
    histogram: tuple[Sequence[float], Sequence[int]] | None = None,
) -> ColumnDrift:
    """All three statistics for one column. `histogram` (edges, counts): the stored training
    histogram to compute PSI on, instead of deciles of `reference`."""
    ref, cur = _finite(reference), _finite(current)
    value = psi_from_histogram(*histogram, cur) if histogram else psi(ref, cur)
    statistic, pvalue = ks(ref, cur)
    distance = wasserstein(ref, cur)
    effective_n = combined_effective_size(ref, cur) if len(ref) and len(cur) else 0.0
    history = [h for h in history_psi(ref, len(cur), histogram) if math.isfinite(h)]
    history_max = max(history) if len(history) >= HISTORY_MIN_WINDOWS else None
    significant = math.isfinite(pvalue) and pvalue < thresholds.ks_pvalue
    large = math.isfinite(value) and value >= thresholds.psi_alert
    beyond_history = history_max is not None and large and value > history_max
    n_text = f"effective n={effective_n:.0f}"
    if large and significant:
        level, detail = (
            "drift",
            f"PSI {value:.2f} >= {thresholds.psi_alert}, significant (KS p={pvalue:.1e} at {n_text})",
        )
    elif beyond_history:
        level = "drift"
        detail = (
            f"PSI {value:.2f} >= {thresholds.psi_alert}, beyond the training history (at most {history_max:.2f} "
            f"between its {len(history)} windows), though not significant at {n_text}"
        )
    elif large:
        level = "shifted"
        within = (
            f"within the training history's range (up to {history_max:.2f} between its {len(history)} windows)"
            if history_max is not None
            else f"too little training history to compare ({len(history)} window(s))"
        )
        detail = f"shifted, not significant at {n_text} (KS p={pvalue:.2g}); {within}"
    elif math.isfinite(value) and value >= thresholds.psi_warn and significant:
        level, detail = "warning", f"PSI {value:.2f} >= {thresholds.psi_warn}, significant (KS p={pvalue:.1e})"
    else:
        level = "stable"
        detail = f"PSI {value:.2f} < {thresholds.psi_warn}" if value < thresholds.psi_warn else "not significant"
    return ColumnDrift(
        name=name,
        psi=value if math.isfinite(value) else 0.0,
        ks_statistic=statistic if math.isfinite(statistic) else 0.0,
        ks_pvalue=pvalue if math.isfinite(pvalue) else 1.0,
        wasserstein=distance if math.isfinite(distance) else 0.0,
        reference_mean=float(ref.mean()) if len(ref) else 0.0,
        current_mean=float(cur.mean()) if len(cur) else 0.0,
        level=level,
        effective_n=effective_n,
        history_psi_max=history_max,
        history_windows=len(history),
        detail=detail,
    )


def matrix_drift(
    reference: Any,
    current: Any,
    names: Sequence[str],
    thresholds: Thresholds,
    histograms: dict[str, tuple[Sequence[float], Sequence[int]]] | None = None,
) -> list[ColumnDrift]:
    """`column_drift` for every column of two (rows, columns) matrices."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    return [
        column_drift(name, ref[:, i], cur[:, i], thresholds, (histograms or {}).get(name))
        for i, name in enumerate(names)
    ]


def verdict(columns: Sequence[ColumnDrift], thresholds: Thresholds) -> Verdict:
    """`drift` when at least `feature_share` of the columns drift; `warning` when any column
    drifts or warns; else `stable` (shifted columns are listed, see the module docstring)."""
    drifted = [c.name for c in columns if c.level == "drift"]
    warned = [c.name for c in columns if c.level == "warning"]
    shifted = [c.name for c in columns if c.level == "shifted"]
    share = len(drifted) / len(columns) if columns else 0.0
    if columns and share >= thresholds.feature_share:
        level = "drift"
    elif drifted or warned:
        level = "warning"
    else:
        level = "stable"
    return Verdict(level=level, score=round(share, 6), drifted=drifted, warned=warned, shifted=shifted)


@dataclass(frozen=True)
class ProportionTest:
    live_accuracy: float
    live_count: int
    reference_accuracy: float
    reference_count: int
    z: float
    p_value: float  # one-sided: live is worse than the reference
    significant: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "liveAccuracy": round(self.live_accuracy, 6),
            "liveCount": self.live_count,
            "validationAccuracy": round(self.reference_accuracy, 6),
            "validationCount": self.reference_count,
            "z": round(self.z, 4),
            "pValue": float(f"{self.p_value:.6g}"),
            "significant": self.significant,
        }


def accuracy_drop_test(
    live_correct: int, live_count: int, reference_accuracy: float, reference_count: int, alpha: float
) -> ProportionTest:
    """One-sided two-proportion z-test with a pooled variance: H1 = live accuracy < reference."""
    live = live_correct / live_count if live_count else 0.0
    pooled_n = live_count + reference_count
    pooled = (live_correct + reference_accuracy * reference_count) / pooled_n if pooled_n else 0.0
    variance = pooled * (1 - pooled) * (1 / max(live_count, 1) + 1 / max(reference_count, 1))
    z = (live - reference_accuracy) / math.sqrt(variance) if variance > 0 else 0.0
    p_value = STANDARD_NORMAL.cdf(z) if live_count and reference_count else 1.0
    return ProportionTest(live, live_count, reference_accuracy, reference_count, z, p_value, p_value < alpha)


def wilson_interval(correct: int, count: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None without observations)."""
    if count <= 0:
        return None
    z = STANDARD_NORMAL.inv_cdf(0.5 + confidence / 2)
    p = correct / count
    denominator = 1 + z * z / count
    centre = (p + z * z / (2 * count)) / denominator
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
