"""A version scored on the labelled bars of a window: task accuracies and a backtest, computed
exactly as in training (`engine.labels`, `engine.evaluation`) but through the served ONNX model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from models_mgmt.engine.evaluation import TRADING_DAYS_PER_YEAR, backtest, task_metrics
from models_mgmt.engine.features import compute_features
from models_mgmt.engine.labels import TASKS, compute_labels
from models_mgmt.engine.timeframes import within
from models_mgmt.models import ModelVersion

from . import serving
from .windows import hyper, iso_day


def score_on_window(
    version: ModelVersion,
    frame: Any,
    start: dt.date | dt.datetime,
    end: dt.date | dt.datetime,
    *,
    bars_per_year: int = TRADING_DAYS_PER_YEAR,
) -> dict[str, Any] | None:
    """The version's task accuracies and backtest on the labelled bars of [start, end] of `frame`
    (the backtest annualised with the frame's `bars_per_year`)."""
    import numpy as np  # heavy: stays out of processes that never score

    horizon, breakout = hyper(version)
    features = compute_features(frame)
    labels = compute_labels(frame, horizon=horizon, breakout_window=breakout)
    index = np.asarray(frame.index)
    usable = (
        features.notna().all(axis=1).to_numpy()
        & labels[list(TASKS)].notna().all(axis=1).to_numpy()
        & labels["next_return"].notna().to_numpy()
        & within(frame.index, start, end)
    )
    if usable.sum() < 1:
        return None
    try:
        served = serving._load(version.model_id, version.version, version.checksum, version.artifact_path)
    except serving.ServingError:
        return None
    probabilities = served.run(features.to_numpy(dtype=np.float64)[usable])
    truth = labels[list(TASKS)].to_numpy(dtype=np.float64)[usable]
    fee = float(((version.metadata or {}).get("hyperparameters") or {}).get("feePerTrade", 0.0005))
    return {
        "performanceMetrics": task_metrics(probabilities, truth),
        "backtest": backtest(
            probabilities[:, TASKS.index("signal")],
            labels["next_return"].to_numpy()[usable],
            fee=fee,
            periods_per_year=bars_per_year,
        ),
        "samples": int(usable.sum()),
        "start": iso_day(index[usable][0]),
        "end": iso_day(index[usable][-1]),
    }
