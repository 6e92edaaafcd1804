"""Features and labels may only look where they are allowed to: features at or before t,
labels at t+1..t+H."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from models_mgmt.engine.features import FEATURE_NAMES, WARMUP_BARS, compute_features
from models_mgmt.engine.labels import TASKS, compute_labels


def _perturb_after(bars: pd.DataFrame, cut: int, seed: int = 0) -> pd.DataFrame:
    """Scramble every bar after row `cut` (prices stay valid: high >= open/close >= low)."""
    rng = np.random.default_rng(seed)
    changed = bars.copy()
    n = len(bars) - cut - 1
    scale = rng.uniform(0.5, 2.0, size=n)
    for column in ("open", "high", "low", "close"):
        changed.iloc[cut + 1 :, changed.columns.get_loc(column)] *= scale
    changed.iloc[cut + 1 :, changed.columns.get_loc("volume")] *= rng.uniform(0.1, 10.0, size=n)
    return changed


@pytest.mark.parametrize("cut", [WARMUP_BARS + 5, 300, 640, 998])
def test_changing_future_bars_never_changes_past_features(bars, cut):
    before = compute_features(bars)
    after = compute_features(_perturb_after(bars, cut))
    pd.testing.assert_frame_equal(before.iloc[: cut + 1], after.iloc[: cut + 1])
    assert not before.iloc[cut + 1 :].equals(after.iloc[cut + 1 :])  # the perturbation did something


@pytest.mark.parametrize("horizon", [1, 5, 10])
def test_labels_read_only_the_next_horizon_bars(bars, horizon):
    cut = 600
    before = compute_labels(bars, horizon=horizon, breakout_window=20)
    after = compute_labels(_perturb_after(bars, cut), horizon=horizon, breakout_window=20)
    # A label of bar t reads bars up to t+H, so labels up to cut-H must not move.
    pd.testing.assert_frame_equal(before.iloc[: cut - horizon + 1], after.iloc[: cut - horizon + 1])
    assert before[list(TASKS)].iloc[-horizon:].isna().all().all()


def test_features_are_complete_after_warmup(sp500):
    features = compute_features(sp500)
    assert list(features.columns) == list(FEATURE_NAMES)
    assert features.iloc[:WARMUP_BARS].isna().all().all()
    assert np.isfinite(features.iloc[WARMUP_BARS:].to_numpy()).all()


def test_signal_and_breakout_follow_their_definitions():
    close = [10.0, 10.0, 10.0, 11.0, 9.6, 12.0, 12.0]
    high, low = [c + 0.5 for c in close], [c - 0.5 for c in close]
    bars = pd.DataFrame({"open": close, "high": high, "low": low, "close": close, "volume": 1.0})
    labels = compute_labels(bars, horizon=2, breakout_window=2)
    # signal: close[t+2] / close[t] > 1
    assert labels["signal"].tolist()[:5] == [0.0, 1.0, 0.0, 1.0, 1.0]
    # breakout: close[t+2] outside [min low, max high] of bars t-1..t
    assert np.isnan(labels["pattern"].iloc[0])
    assert labels["pattern"].tolist()[1:5] == [1.0, 0.0, 1.0, 1.0]
    assert labels[list(TASKS)].iloc[-2:].isna().all().all()


def test_light_modules_do_not_import_torch():
    """The web process imports these; torch must load only when training runs."""
    code = (
        "import sys; import models_mgmt.engine.bars, models_mgmt.engine.families, "
        "models_mgmt.engine.config, models_mgmt.engine.spec, models_mgmt.engine.features, "
        "models_mgmt.engine.training, models_mgmt.engine.reporting; "
        "import models_mgmt.engine.llm.base, models_mgmt.engine.llm.prompts, models_mgmt.engine.llm.data, "
        "models_mgmt.engine.llm.spec, models_mgmt.engine.llm.tokens, models_mgmt.engine.llm.evaluation, "
        "models_mgmt.engine.llm.artifact, models_mgmt.engine.llm.modelfile, models_mgmt.engine.llm.training; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'tokenizers') if m in sys.modules]; "
        "assert not heavy, f'{heavy} imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
