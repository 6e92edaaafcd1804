"""Reference distributions of the training data, stored with a version for drift detection.

Drift is measured later (e.g. with the population stability index, psi) by binning new data with
the *training* bin edges and comparing counts. Edges are training deciles, so every bin holds
about a tenth of the training data; when scoring new data the first and last bins extend to
minus and plus infinity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
HISTOGRAM_BINS = 10


def summarize_column(values: np.ndarray) -> dict[str, Any]:
    """Moments, quantiles and a decile histogram (edges + counts) of one column."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    values = values[np.isfinite(values)].astype(np.float64)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)))
    if len(edges) < 2:  # a constant column: one bin around its value
        edges = np.array([values[0] - 0.5, values[0] + 0.5]) if len(values) else np.array([0.0, 1.0])
    counts, _ = np.histogram(values, bins=edges)
    return {
        "count": len(values),
        "mean": float(values.mean()) if len(values) else 0.0,
        "std": float(values.std()) if len(values) else 0.0,
        "min": float(values.min()) if len(values) else 0.0,
        "max": float(values.max()) if len(values) else 0.0,
        "quantiles": {f"{q:g}": float(np.quantile(values, q)) for q in QUANTILES} if len(values) else {},
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def summarize(matrix: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {name: summarize_column(matrix[:, i]) for i, name in enumerate(names)}
