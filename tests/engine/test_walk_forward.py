"""Walk-forward folds are purged, chronological, fitted per fold, and never touch the final holdout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models_mgmt.engine.dataset import sample_frame, split_at
from models_mgmt.engine.training import run_training
from models_mgmt.engine.walk_forward import METRICS, plan, walk_forward

torch.set_num_threads(1)


def _plan(bars, spec, folds=4):
    frame = sample_frame(bars, horizon=spec.horizon, breakout_window=spec.breakout_window)
    return plan(frame, folds=folds, validation_split=spec.validation_split)


@pytest.mark.parametrize("horizon", [1, 5, 20])
def test_no_training_row_falls_within_horizon_bars_of_its_test_fold(bars, spec, horizon):
    cut = _plan(bars, dataclasses.replace(spec, horizon=horizon))
    assert len(cut.folds) == 4
    for fold in cut.folds:
        first_test = fold.test_positions[0]
        # A training label of bar p reads bars p+1..p+H: every one of them precedes the test block.
        assert (fold.train_positions + horizon < first_test).all()
        assert fold.train_positions.max() == first_test - horizon - 1  # purged by exactly H bars
        # ... and inside the fold, the early-stopping rows are embargoed from the training rows too.
        inner = split_at(cut.frame, fold.train_positions, validation_split=spec.validation_split)
        assert (inner.train_positions + horizon < inner.val_positions[0]).all()
        assert inner.val_positions.max() < first_test


def test_the_holdout_dates_never_appear_in_any_fold(bars, spec):
    cut = _plan(bars, spec)
    holdout = {cut.frame.dates[p] for p in cut.holdout_positions}
    first_holdout = cut.holdout_positions[0]
    for fold in cut.folds:
        inner = split_at(cut.frame, fold.train_positions, validation_split=spec.validation_split)
        for rows in (inner.train_positions, inner.val_positions, fold.test_positions):
            assert holdout.isdisjoint(cut.frame.dates[p] for p in rows)
            assert (rows + spec.horizon < first_holdout).all()  # not even a label reads a holdout bar
    # The holdout is exactly the window a single fine-tune validates on.
    assert list(cut.holdout_positions) == list(spec.split(bars).val_positions)


def test_folds_walk_forward_in_equal_test_blocks_with_expanding_training(bars, spec):
    cut = _plan(bars, spec, folds=3)
    sizes = {len(f.test_positions) for f in cut.folds}
    assert len(sizes) == 1
    for earlier, later in zip(cut.folds, cut.folds[1:], strict=False):
        assert earlier.test_positions[-1] < later.test_positions[0]
        assert len(later.train_positions) > len(earlier.train_positions)


def test_normalisation_is_fitted_on_each_folds_training_rows_only(bars, spec):
    cut = _plan(bars, spec)
    fold = cut.folds[0]
    inner = split_at(cut.frame, fold.train_positions, validation_split=spec.validation_split)
    wild = bars.copy()
    wild.iloc[fold.test_positions[0] :, 4] *= 50.0  # a volume explosion from the test block on
    wild_cut = _plan(wild, spec)
    wild_inner = split_at(wild_cut.frame, wild_cut.folds[0].train_positions, validation_split=spec.validation_split)
    assert wild_inner.normalization == inner.normalization
    assert np.allclose(inner.normalization.mean, inner.x_train.mean(axis=0), atol=1e-6)


def test_bad_fold_counts_and_too_little_data_are_refused(bars, spec):
    frame = sample_frame(bars.iloc[-200:], horizon=spec.horizon, breakout_window=spec.breakout_window)
    with pytest.raises(ValueError, match="between 2 and 10"):
        plan(frame, folds=1, validation_split=0.2)
    with pytest.raises(ValueError, match="not enough bars for 10 walk-forward folds"):
        plan(frame, folds=10, validation_split=0.2)


def test_report_gives_every_fold_and_mean_sd_edge_over_baseline(bars, spec):
    seen = []
    report = walk_forward(dataclasses.replace(spec, epochs=2, walk_forward_folds=3), bars, on_fold=seen.append)
    assert report is not None and report["foldCount"] == 3 and len(report["folds"]) == 3
    assert [f["fold"] for f in seen] == [1, 2, 3]
    assert report["purgeBars"] == spec.horizon and report["startWeights"] == "fresh"
    for key in METRICS:
        values = [f["metrics"][key] for f in report["folds"]]
        assert report["mean"][key] == pytest.approx(np.mean(values), abs=1e-6)
        assert report["sd"][key] == pytest.approx(np.std(values, ddof=1), abs=1e-6)
        edges = [f["metrics"][key] - f["baselines"][key] for f in report["folds"]]
        assert report["edge"][key] == pytest.approx(np.mean(edges), abs=1e-5)
    assert report["objective"] == report["edge"]["overallScore"]
    assert all(f["testWindow"][1] < report["holdoutWindow"][0] for f in report["folds"])


def test_a_stop_during_the_folds_returns_nothing(bars, spec):
    assert walk_forward(dataclasses.replace(spec, walk_forward_folds=2), bars, should_stop=lambda: True) is None


def test_run_training_with_walk_forward_reports_the_folds(bars, spec, tmp_path):
    wf = dataclasses.replace(spec, epochs=2, evaluation="walk_forward", walk_forward_folds=2)
    result = run_training(wf, data=bars, work_dir=tmp_path)
    assert result.status == "succeeded" and result.artifact_dir
    assert result.walk_forward is not None and result.walk_forward["foldCount"] == 2
    assert result.walk_forward["holdoutWindow"] == list(result.validation_window)
    plain = run_training(dataclasses.replace(wf, evaluation="validation"), data=bars, work_dir=tmp_path / "plain")
    assert plain.walk_forward is None
    assert plain.metrics == result.metrics  # the kept model's run is the same either way
