"""`run_training` end to end: the result the worker stores and the artifact a version keeps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models_mgmt.engine.artifact import load_model, load_weights, onnx_session, verify_artifact
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.engine.spec import TrainingSpec
from models_mgmt.engine.training import run_training
from tests.engine.conftest import split_for

SCORE_KEYS = {"patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"}
BACKTEST_KEYS = {
    "cumulativeReturn",
    "sharpe",
    "maxDrawdown",
    "hitRate",
    "trades",
    "buyHoldReturn",
    "buyHoldSharpe",
    "buyHoldMaxDrawdown",
    "fee",
    "barsPerYear",
}


@pytest.fixture(scope="module")
def small_spec() -> TrainingSpec:
    return TrainingSpec(epochs=3, batch_size=64, early_stopping_patience=0, hidden_sizes=(16, 8))


@pytest.fixture(scope="module")
def trained(bars, small_spec, tmp_path_factory):
    return run_training(small_spec, data=bars, work_dir=tmp_path_factory.mktemp("job"))


def test_result_carries_scores_beside_their_baselines(trained):
    assert trained.status == "succeeded" and trained.epochs_run == 3
    assert set(trained.metrics) == SCORE_KEYS and set(trained.baselines) == SCORE_KEYS
    assert set(trained.backtest) == BACKTEST_KEYS
    assert trained.accuracy == trained.metrics["overallScore"]
    assert trained.train_window[1] < trained.validation_window[0]
    assert trained.validation_window[1] <= "2018-12-31"
    assert trained.embargo_samples == 5 and trained.train_samples > trained.validation_samples > 0
    assert trained.hyperparameters["hiddenSizes"] == [16, 8]
    json.dumps(trained.to_dict())  # everything is plain data


def test_artifact_holds_every_file_and_a_valid_checksum(trained):
    directory = Path(trained.artifact_dir)
    names = {p.name for p in directory.iterdir()}
    expected = {"weights.safetensors", "architecture.json", "normalization.json", "feature_summary.json"}
    assert expected | {"model.onnx", "training.json", "manifest.json"} <= names
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["checksum"] == trained.checksum
    assert verify_artifact(directory)
    assert trained.response_time_ms is not None and trained.response_time_ms > 0
    assert not any(p.name.startswith(".") for p in directory.parent.iterdir())  # no staging left behind


def test_a_changed_file_fails_the_checksum(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained.artifact_dir, copy)
    assert verify_artifact(copy)
    (copy / "normalization.json").write_text("{}")
    assert not verify_artifact(copy)


def test_feature_summary_describes_the_training_distribution(trained):
    summary = json.loads((Path(trained.artifact_dir) / "feature_summary.json").read_text())
    assert summary["samples"] == trained.train_samples
    for name, column in summary["features"].items():
        histogram = column["histogram"]
        assert sum(histogram["counts"]) == trained.train_samples, name
        assert len(histogram["edges"]) == len(histogram["counts"]) + 1
        assert column["quantiles"]["0.01"] <= column["quantiles"]["0.5"] <= column["quantiles"]["0.99"]
    assert set(summary["predictions"]) == {"signal", "risk", "pattern"}


def test_onnx_matches_pytorch_within_1e_5(trained, bars, small_spec):
    model, normalization = load_model(trained.artifact_dir)
    split = split_for(bars, small_spec)
    raw = np.concatenate([split.x_train, split.x_val]).astype(np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(normalization.apply(raw)))).numpy()
    session = onnx_session(Path(trained.artifact_dir) / "model.onnx")
    (actual,) = session.run(None, {"features": raw})
    assert actual.shape == expected.shape == (len(raw), 3)
    assert np.abs(actual - expected).max() < 1e-5
    (single,) = session.run(None, {"features": raw[:1]})
    assert np.abs(single - expected[:1]).max() < 1e-5


def test_fine_tuning_from_a_version_starts_at_its_weights(trained, bars, small_spec, tmp_path):
    untouched = run_training(
        dataclasses.replace(small_spec, epochs=0, seed=5),
        data=bars,
        work_dir=tmp_path,
        init_weights=trained.artifact_dir,
    )
    # The starting weights are the base version's: scored on the same window they give its loss.
    assert untouched.start_val_loss == pytest.approx(trained.best_val_loss, abs=1e-7)
    # Nothing trained, nothing to register: no artifact, and the result says why.
    assert untouched.weights_changed is False and untouched.artifact_dir is None and untouched.best_epoch == 0


def test_the_kept_weights_are_a_trained_epoch_even_when_none_beats_the_start(bars, small_spec, tmp_path):
    """Regression: a fine-tune whose epochs all did worse than its base kept the base's weights
    and registered them as a new version, with the base's loss as if training had measured it."""
    trained = run_training(
        dataclasses.replace(small_spec, epochs=40, early_stopping_patience=4, learning_rate=3e-3),
        data=bars,
        work_dir=tmp_path / "base",
    )
    base = load_weights(trained.artifact_dir)
    worse = run_training(
        dataclasses.replace(small_spec, epochs=3, learning_rate=1.0, early_stopping_patience=0, seed=9),
        data=bars,
        work_dir=tmp_path / "tuned",
        init_weights=trained.artifact_dir,
    )
    assert worse.status == "succeeded" and worse.weights_changed
    assert worse.improved_on_start is False  # lr 1.0 wrecks a well-trained base on every epoch
    assert 1 <= worse.best_epoch <= 3
    measured = {row["epoch"]: row for row in worse.history}
    assert worse.best_val_loss == measured[worse.best_epoch]["val_loss"]
    assert worse.best_train_loss == measured[worse.best_epoch]["train_loss"]
    assert worse.best_val_loss == min(row["val_loss"] for row in worse.history)
    assert worse.start_val_loss == pytest.approx(trained.best_val_loss, abs=1e-7)
    after = load_weights(worse.artifact_dir)
    assert any(not torch.equal(after[k], base[k]) for k in base)


def test_a_stopped_run_writes_no_artifact_and_can_resume(bars, small_spec, tmp_path):
    calls = iter(range(10_000))
    stopped = run_training(small_spec, data=bars, work_dir=tmp_path, should_stop=lambda: next(calls) >= 20)
    assert stopped.status == "stopped" and stopped.artifact_dir is None and stopped.checksum is None
    assert stopped.checkpoint_path is not None
    resumed = run_training(small_spec, data=bars, work_dir=tmp_path, resume_from=tmp_path)
    assert resumed.status == "succeeded" and resumed.epochs_run == 3


def test_spec_from_config_merges_family_defaults():
    config = FineTuningConfig(
        model_name="techanal-signal",
        dataset="sp500",
        epochs=7,
        learning_rate=0.01,
        batch_size=32,
        validation_split=0.25,
        early_stopping_patience=2,
        training_data_size=0,
        hyperparameters={"hiddenSizes": [8], "freezeTrunk": True},
    )
    spec = TrainingSpec.from_config(config)
    assert (spec.epochs, spec.learning_rate, spec.batch_size) == (7, 0.01, 32)
    assert spec.hidden_sizes == (8,) and spec.freeze_trunk is True
    assert spec.horizon == 5 and spec.breakout_window == 20 and spec.seed == 42 and spec.training_data_size is None
    assert spec.hyperparameters()["feePerTrade"] == 0.0005
    with pytest.raises(ValueError, match="horizon"):
        TrainingSpec.from_config(dataclasses.replace(config, hyperparameters={"horizon": 0}))


def test_a_version_scored_on_its_own_window_reproduces_its_metrics(trained, bars, small_spec):
    from models_mgmt.engine.scoring import score_artifact_on_window

    assert score_artifact_on_window(trained.artifact_dir, small_spec, bars) == trained.metrics
