"""Walk-forward evaluation: k purged chronological folds before a final holdout no fold sees.

One validation window is the easiest way to fool yourself in trading: a recipe tuned or judged on
one stretch of market may only have suited that stretch. Walk-forward scores the same recipe on
several successive stretches, each time trained only on what came before it.

The rules, and why:

* **Final holdout** -- the samples are cut exactly as a single fine-tune cuts them
  (`dataset.split_at`): the last `validation_split` fraction is the holdout, and training rows
  whose label window reaches it are dropped. The folds use only the rows before it, so the
  holdout's dates never appear in any fold's training, validation or test rows, and a search that
  picks a recipe by its fold scores can still be judged on data it never saw.
* **Folds** -- the pre-holdout rows are cut like scikit-learn's `TimeSeriesSplit(k, gap=horizon)`:
  k+1 equal blocks; fold i tests on block i+1 and trains on everything before it (an expanding
  window).
* **Purge** -- a training label of bar t reads bars t+1..t+H, so a fold's training rows whose label
  window reaches its first test bar are dropped (the same embargo as the single split, counted in
  bars of the data).
* **Per-fold early stopping and normalisation** -- inside each fold, the training rows are split
  again by the same rule (last `validation_split` fraction validates, embargoed); the normalisation
  is fitted on that fold's training rows only and early stopping reads only its validation rows,
  so nothing from the test block decides anything.
* **Fresh weights** -- every fold trains from the spec's seeded initialisation, never from a base
  version: a base version may have been trained on the very bars a fold tests on.

Every fold reports the three task metrics beside the majority-class baseline of its own training
rows; the report gives their mean, sample standard deviation and the edge (metric - baseline).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .dataset import SampleFrame, SampleSplit, _iso, sample_frame, split_at
from .evaluation import majority_baselines, task_metrics
from .labels import METRIC_OF_TASK, TASKS

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

    from .spec import TrainingSpec

MIN_FOLDS, MAX_FOLDS = 2, 10
MIN_TEST_SAMPLES = 10
METRICS = (*(METRIC_OF_TASK[t] for t in TASKS), "overallScore")


@dataclass(frozen=True)
class Fold:
    """One fold's rows (positions in the bars frame), before the inner train/validation cut."""

    number: int  # 1-based
    train_positions: np.ndarray  # purged: every label window ends before the first test bar
    test_positions: np.ndarray
    purged_samples: int


@dataclass(frozen=True)
class WalkForwardPlan:
    folds: list[Fold]
    holdout_positions: np.ndarray
    horizon: int
    frame: SampleFrame


def plan(frame: SampleFrame, *, folds: int, validation_split: float) -> WalkForwardPlan:
    """Cut the usable rows of `frame` into a final holdout and `folds` purged chronological folds."""
    if not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise ValueError(f"walk-forward folds must be between {MIN_FOLDS} and {MAX_FOLDS}")
    outer = split_at(frame, frame.positions, validation_split=validation_split)
    before = outer.train_positions  # the holdout's embargo is already applied
    test_size = len(before) // (folds + 1)
    if test_size < MIN_TEST_SAMPLES:
        raise ValueError(
            f"not enough bars for {folds} walk-forward folds: {len(before)} samples before the holdout give "
            f"{test_size} per fold (need at least {MIN_TEST_SAMPLES})"
        )
    cuts = []
    for i in range(folds):
        start = len(before) - (folds - i) * test_size
        test = before[start : start + test_size]
        candidates = before[:start]
        train = candidates[candidates + frame.horizon < test[0]]
        cuts.append(Fold(i + 1, train, test, len(candidates) - len(train)))
    return WalkForwardPlan(cuts, outer.val_positions, frame.horizon, frame)


def _fold_report(fold: Fold, inner: SampleSplit, frame: SampleFrame, probabilities: Any, outcome: Any) -> dict:
    y_test = frame.y[fold.test_positions]
    metrics = task_metrics(probabilities, y_test)
    baselines = majority_baselines(inner.y_train, y_test)
    dates = frame.dates
    return {
        "fold": fold.number,
        "trainWindow": list(inner.train_window),
        "validationWindow": list(inner.validation_window),
        "testWindow": [_iso(dates[fold.test_positions[0]]), _iso(dates[fold.test_positions[-1]])],
        "trainSamples": len(inner.x_train),
        "validationSamples": len(inner.x_val),
        "testSamples": len(fold.test_positions),
        "purgedSamples": fold.purged_samples + inner.embargo_samples,
        "epochsRun": outcome.epochs_run,
        "bestEpoch": outcome.best_epoch,
        "metrics": metrics,
        "baselines": baselines,
        "edge": {k: round(metrics[k] - baselines[k], 6) for k in METRICS},
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return round(mean, 6), round(sd, 6)


def summarise(folds: list[dict], *, horizon: int, holdout: list[str], holdout_samples: int) -> dict[str, Any]:
    """Mean and sample sd of every metric, its baseline and its edge over the folds."""
    summary: dict[str, Any] = {"mean": {}, "sd": {}, "baselineMean": {}, "edge": {}, "edgeSd": {}}
    for key in METRICS:
        summary["mean"][key], summary["sd"][key] = _mean_sd([f["metrics"][key] for f in folds])
        summary["baselineMean"][key], _ = _mean_sd([f["baselines"][key] for f in folds])
        summary["edge"][key], summary["edgeSd"][key] = _mean_sd([f["edge"][key] for f in folds])
    return {
        "method": "walk_forward",
        "folds": folds,
        "foldCount": len(folds),
        "purgeBars": horizon,
        "holdoutWindow": holdout,
        "holdoutSamples": holdout_samples,
        "startWeights": "fresh",
        **summary,
        # what a search maximises: the mean edge of overallScore over its baseline
        "objective": summary["edge"]["overallScore"],
    }


def walk_forward(
    spec: TrainingSpec,
    data: pd.DataFrame,
    *,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | Any | None = None,
) -> dict[str, Any] | None:
    """Train and score `spec` on every fold of `data`; the report (see `summarise`), or None when stopped.

    `on_fold` receives each fold's report as soon as it is scored (a search prunes on it)."""
    import torch  # heavy: only the training worker loads torch

    from .trainer import as_stop_check, fit  # heavy: the trainer pulls torch

    frame = sample_frame(
        data, horizon=spec.horizon, breakout_window=spec.breakout_window, training_data_size=spec.training_data_size
    )
    cut = plan(frame, folds=spec.walk_forward_folds, validation_split=spec.validation_split)
    stop = as_stop_check(should_stop)
    reports = []
    for fold in cut.folds:
        inner = split_at(frame, fold.train_positions, validation_split=spec.validation_split)
        outcome = fit(spec, inner, should_stop=stop)
        if outcome.status == "stopped":
            return None
        with torch.no_grad():
            x_test = torch.from_numpy(inner.normalization.apply(frame.x[fold.test_positions].astype("float32")))
            probabilities = torch.sigmoid(outcome.model(x_test)).numpy()
        report = _fold_report(fold, inner, frame, probabilities, outcome)
        reports.append(report)
        if on_fold is not None:
            on_fold(report)
    holdout = [_iso(frame.dates[cut.holdout_positions[0]]), _iso(frame.dates[cut.holdout_positions[-1]])]
    return summarise(reports, horizon=spec.horizon, holdout=holdout, holdout_samples=len(cut.holdout_positions))
