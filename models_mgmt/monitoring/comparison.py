"""Versions side by side: their stored metrics (which is best), and every version re-evaluated on
one common held-out window of bars so the numbers are comparable."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from models_mgmt import selectors
from models_mgmt.choices import VersionStatus
from models_mgmt.engine import timeframes
from models_mgmt.errors import NotFound
from models_mgmt.models import AIModel, Dataset, ModelVersion
from models_mgmt.permissions import UserLike

from .drift import thresholds
from .scoring import score_on_window
from .windows import DAYS_PER_BAR, BarTime, bar_after, counts_days, frame_with_history, hyper, iso_day


def _train_end(version: ModelVersion) -> BarTime | None:
    window = (version.metadata or {}).get("trainWindow")
    return timeframes.parse_bar_time(window[1]) if window else None


def held_out_comparison(
    model: AIModel, versions: list[ModelVersion], *, start: BarTime | None = None, end: BarTime | None = None
) -> dict[str, Any]:
    """Every chosen version scored on ONE window of the model's dataset.

    Default window: the bars after the latest training window among the chosen versions (plus the
    horizon, so no training label reaches in) -- unseen by all of them. When the dataset ends too
    soon for that, the latest validation window among them is used and each version says whether
    its training saw those bars (`seenInTraining`).
    """
    limits = thresholds()
    dataset = model.default_dataset or next((v.dataset for v in versions if v.dataset), None)
    scored = [v for v in versions if v.artifact_path and (Path(v.artifact_path) / "model.onnx").is_file()]
    if dataset is None or not scored or dataset.last_bar_at is None:
        return {"status": "unavailable", "detail": "no dataset or no version with an artifact to evaluate",
                "window": None, "results": {}, "deltas": {}}  # fmt: skip
    chosen_by = "request"
    if start is None and end is None:
        ends = [e for e in (_train_end(v) for v in scored) if e is not None]
        horizon = max(hyper(v)[0] for v in scored)
        start = _after_training(dataset, max(ends, key=timeframes.window_start), horizon) if ends else None
        chosen_by = "after the latest training window"
        labelled = selectors.dataset_bars(dataset, start=start).count() - horizon if start else 0
        if start is None or labelled < limits.min_samples:
            validation: list[list[str]] = [w for w in ((v.metadata or {}).get("validationWindow") for v in scored) if w]
            if not validation:
                return {"status": "unavailable", "detail": "the versions record no training or validation window",
                        "window": None, "results": {}, "deltas": {}}  # fmt: skip
            latest = max(validation, key=lambda w: w[1])
            start, end = timeframes.parse_bar_time(latest[0]), timeframes.parse_bar_time(latest[1])
            chosen_by = "the latest validation window (no unseen bars after the training windows)"
    if start is None:  # only `end` requested: the window runs from the dataset's first bar
        start = dataset.first_date or end
    end = end or dataset.last_date
    assert start is not None and end is not None  # the dataset has bars (last_date is set)
    # Labels of the window's last bars read up to 60 bars (the longest horizon) past its end.
    frame = frame_with_history(dataset, start, end, lookahead_days=120, lookahead_bars=61)
    per_year = timeframes.timeframe(dataset.timeframe).bars_per_year
    results: dict[str, Any] = {}
    for version in scored:
        score = score_on_window(version, frame, start, end, bars_per_year=per_year)
        if score is None:
            continue
        train_end = _train_end(version)
        seen = bool(train_end and timeframes.window_start(train_end) >= timeframes.window_start(start))
        results[version.version] = {**score, "seenInTraining": seen}
    reference = next((v.version for v in versions if v.status == VersionStatus.ACTIVE and v.version in results), None)
    reference = reference or next((v.version for v in versions if v.version in results), None)
    deltas: dict[str, Any] = {}
    if reference:
        base = results[reference]
        for name, result in results.items():
            row = {k: _delta(v, base["performanceMetrics"].get(k)) for k, v in result["performanceMetrics"].items()}
            for key in ("cumulativeReturn", "sharpe", "maxDrawdown", "hitRate"):
                row[f"backtest.{key}"] = _delta(result["backtest"].get(key), base["backtest"].get(key))
            deltas[name] = row
    first = next(iter(results.values()), None)
    return {
        "status": "computed" if results else "unavailable",
        "window": {
            "dataset": dataset.name,
            "start": first["start"] if first else iso_day(start),
            "end": first["end"] if first else iso_day(end),
            "samples": first["samples"] if first else 0,
            "chosenBy": chosen_by,
        },
        "reference": reference,
        "results": results,
        "deltas": deltas,
        "detail": "every version scored on the same bars; deltas are against the reference version",
    }


def _after_training(dataset: Dataset, train_end: BarTime, horizon: int) -> BarTime | None:
    """The first bar no training label reached: past the training window's last bar plus the
    horizon (daily: a calendar span with slack for holidays; else counted in bars)."""
    if counts_days(dataset):
        return train_end + dt.timedelta(days=int(horizon * DAYS_PER_BAR) + 2)
    return bar_after(dataset, train_end, horizon + 1)


def _delta(value: Any, base: Any) -> float | None:
    if not isinstance(value, (int, float)) or not isinstance(base, (int, float)):
        return None
    result = float(value) - float(base)
    return round(result, 6) if math.isfinite(result) else None


# Metrics a comparison lines up, and whether a higher value is better.
COMPARED_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "accuracy", True),
    ("responseTime", "response_time_ms", False),
    ("patternRecognition", "performance_metrics.patternRecognition", True),
    ("signalAccuracy", "performance_metrics.signalAccuracy", True),
    ("riskAssessment", "performance_metrics.riskAssessment", True),
    ("overallScore", "performance_metrics.overallScore", True),
    ("backtestSharpe", "backtest.sharpe", True),
    ("backtestReturn", "backtest.cumulativeReturn", True),
    ("backtestMaxDrawdown", "backtest.maxDrawdown", False),
    ("validationLoss", "metadata.loss", False),
)
MAX_COMPARED_VERSIONS = 20


# Rows measured on each version's own validation window (all but the serving latency): a star
# across different windows would compare different bars, so it is only given among versions whose
# windows are the same (heldOut compares all of them on one window instead).
PER_WINDOW_METRICS = frozenset(label for label, _, _ in COMPARED_METRICS) - {"responseTime"}


def _metric_value(version: ModelVersion, path: str) -> float | None:
    head, _, key = path.partition(".")
    value = getattr(version, head)
    if key:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _unmeasured_loss(version: ModelVersion) -> str | None:
    """Why a version's recorded loss is not one its own training measured (None: it is).

    Versions registered before losses were labelled could keep their starting weights (bestEpoch
    0), and then recorded the starting weights' loss as theirs.
    """
    metadata = version.metadata or {}
    epoch = metadata.get("lossEpoch", metadata.get("bestEpoch"))
    if isinstance(epoch, int) and epoch < 1:
        return "the recorded loss is the starting weights', not a trained epoch's"
    return None


def _metric_row(label: str, path: str, higher_is_better: bool, chosen: list[ModelVersion]) -> dict[str, Any]:
    notes: dict[str, str] = {}
    values: dict[str, float | None] = {}
    for version in chosen:
        values[version.version] = _metric_value(version, path)
        why = _unmeasured_loss(version) if label == "validationLoss" else None
        if why and values[version.version] is not None:
            values[version.version], notes[version.version] = None, why
    present = {k: x for k, x in values.items() if x is not None}
    best = None
    windows = {tuple((v.metadata or {}).get("validationWindow") or ()) for v in chosen if v.version in present} - {()}
    if label in PER_WINDOW_METRICS and len(windows) > 1:
        notes["*"] = "measured on different validation windows: no best value (see heldOut for one common window)"
    elif len(present) >= 2 and len(set(present.values())) > 1:
        best = (max if higher_is_better else min)(present, key=present.__getitem__)
    return {"metric": label, "higherIsBetter": higher_is_better, "values": values, "best": best, "notes": notes}


def model_version_comparison(
    user: UserLike,
    model_name: str,
    versions: list[str] | None,
    start: BarTime | None = None,
    end: BarTime | None = None,
) -> dict[str, Any]:
    """Versions side by side: each stored metric's value per version and which version is best,
    and (`heldOut`) every version re-evaluated on one common held-out window.

    Without a list, the most recent MAX_COMPARED_VERSIONS versions are compared.
    """
    queryset = selectors.model_version_list(user, model_name)
    if versions:
        chosen = list(queryset.filter(version__in=versions))
        missing = sorted(set(versions) - {v.version for v in chosen})
        if missing:
            raise NotFound(f"Model '{model_name}' has no version(s): {', '.join(missing)}.")
    else:
        chosen = list(queryset[:MAX_COMPARED_VERSIONS])
    rows = []
    for label, path, higher_is_better in COMPARED_METRICS:
        rows.append(_metric_row(label, path, higher_is_better, chosen))
    model = selectors.ai_model_get(user, model_name)
    held_out = held_out_comparison(model, chosen, start=start, end=end)
    return {"modelName": model_name, "versions": chosen, "metrics": rows, "heldOut": held_out}
