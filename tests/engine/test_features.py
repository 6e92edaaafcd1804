"""Features and labels may only look where they are allowed to: features at or before t,
labels at t+1..t+H."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from models_mgmt.engine.bars import load_builtin
from models_mgmt.engine.features import FEATURE_NAMES, WARMUP_BARS, compute_features, last_feature_row
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


# --- The last row alone, in numpy (what serving computes per request) ---------------------------


def _last_rows(window: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    expected = compute_features(window).iloc[-1].to_numpy(dtype=np.float64)
    got = last_feature_row(*(window[c].to_numpy() for c in ("close", "high", "low", "volume")))
    return expected, got


def _assert_same_row(window: pd.DataFrame) -> None:
    expected, got = _last_rows(window)
    assert np.array_equal(np.isnan(expected), np.isnan(got)), (expected, got)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", ["sp500", "nasdaq"])
def test_last_feature_row_equals_the_last_row_of_compute_features(name):
    """Real bars, many window ends, windows shorter than the warm-up, just past it, serving's 271
    bars and longer: the same row as pandas, NaN where pandas has NaN."""
    frame = load_builtin(name)
    ends = np.random.default_rng(13).integers(WARMUP_BARS, len(frame) + 1, size=40)
    for end in [*ends, len(frame)]:
        for size in (WARMUP_BARS - 10, WARMUP_BARS, WARMUP_BARS + 1, WARMUP_BARS + 2, 150, 271, 272, 600):
            _assert_same_row(frame.iloc[max(0, end - size) : end])


def test_last_feature_row_on_intraday_bars():
    from tests.hourly import hourly_frame

    frame = hourly_frame(120)
    for end in range(WARMUP_BARS + 1, len(frame) + 1, 37):
        _assert_same_row(frame.iloc[max(0, end - 271) : end])


def test_last_feature_row_on_constant_volume_and_constant_prices(sp500):
    window = sp500.iloc[-300:].copy()
    window["volume"] = 0.0  # an index that reports no volume: z = 0, as in pandas
    _assert_same_row(window)
    window["volume"] = 1e6
    _assert_same_row(window)
    flat = window.copy()
    flat.iloc[-80:, :4] = 100.0  # constant prices: volatilities exactly 0, the ratio undefined
    expected, _ = _last_rows(flat)
    assert np.isnan(expected[FEATURE_NAMES.index("vol_ratio_5_60")])
    _assert_same_row(flat)
    quiet = window.copy()
    quiet.iloc[-8:, :4] = 100.0  # the last 5 returns are 0: vol_5 = 0 exactly, vol_60 is not
    _assert_same_row(quiet)
