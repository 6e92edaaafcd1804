"""engine/drift.py on real S&P 500 features: a crisis drifts from a calm year, calm halves do not."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from models_mgmt.engine import drift
from models_mgmt.engine.bars import load_builtin
from models_mgmt.engine.features import FEATURE_NAMES, compute_features

T = drift.Thresholds()


@pytest.fixture(scope="module")
def features():
    return compute_features(load_builtin("sp500")).dropna()


def window(frame, start: str, end: str) -> np.ndarray:
    index = frame.index
    return frame[(index >= dt.date.fromisoformat(start)) & (index <= dt.date.fromisoformat(end))].to_numpy()


def test_a_crisis_window_drifts_from_a_calm_year(features):
    columns = drift.matrix_drift(
        window(features, "2005-01-01", "2005-12-31"), window(features, "2008-09-01", "2008-12-31"), FEATURE_NAMES, T
    )
    result = drift.verdict(columns, T)
    assert result.level == "drift"
    by_name = {c.name: c for c in columns}
    # Volatility is what a crash changes most: far beyond the "significant shift" PSI level.
    assert by_name["vol_5"].level == "drift" and by_name["vol_5"].psi > 1.0
    assert by_name["vol_20"].wasserstein > 3  # more than three 2005 standard deviations away


@pytest.mark.parametrize("year", [2005, 2006, 2014])
def test_two_halves_of_a_calm_year_do_not_drift(features, year):
    columns = drift.matrix_drift(
        window(features, f"{year}-01-01", f"{year}-06-30"),
        window(features, f"{year}-07-01", f"{year}-12-31"),
        FEATURE_NAMES,
        T,
    )
    assert drift.verdict(columns, T).level == "stable"


def test_plain_ks_would_call_calm_halves_different_but_the_effective_size_does_not(features):
    first = window(features, "2005-01-01", "2005-06-30")[:, FEATURE_NAMES.index("vol_60")]
    second = window(features, "2005-07-01", "2005-12-31")[:, FEATURE_NAMES.index("vol_60")]
    assert drift.ks(first, second, autocorrelated=False)[1] < 0.01
    assert drift.ks(first, second)[1] > 0.01
    assert drift.effective_size(first) < len(first) / 10


def test_psi_of_identical_samples_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert drift.psi(reference, reference) == pytest.approx(0.0, abs=1e-9)
    shifts = [drift.psi(reference, reference + s) for s in (0.1, 0.5, 1.0)]
    assert shifts == sorted(shifts) and shifts[-1] > 0.25


def test_psi_on_a_stored_histogram_counts_new_extremes():
    edges, counts = [0.0, 1.0, 2.0], [50, 50]
    assert drift.psi_from_histogram(edges, counts, [0.5, 1.5] * 50) == pytest.approx(0.0)
    # Values beyond the stored edges fall in the outer bins (opened to +-inf), not out of the count.
    assert drift.psi_from_histogram(edges, counts, [5.0] * 100) > 1.0


def test_wasserstein_is_in_reference_standard_deviations():
    rng = np.random.default_rng(1)
    reference = rng.normal(scale=3.0, size=20000)
    assert drift.wasserstein(reference, reference + 3.0) == pytest.approx(1.0, rel=0.05)


def test_accuracy_drop_test_is_one_sided():
    worse = drift.accuracy_drop_test(40, 100, 0.6, 500, alpha=0.05)
    assert worse.significant and worse.p_value < 0.01
    better = drift.accuracy_drop_test(70, 100, 0.6, 500, alpha=0.05)
    assert not better.significant and better.p_value > 0.9
    noise = drift.accuracy_drop_test(57, 100, 0.6, 500, alpha=0.05)
    assert not noise.significant


def test_wilson_interval_contains_the_proportion_and_narrows_with_more_data():
    low, high = drift.wilson_interval(6, 10)
    assert low < 0.6 < high
    low2, high2 = drift.wilson_interval(600, 1000)
    assert high2 - low2 < high - low
    assert drift.wilson_interval(0, 0) is None


def test_a_large_shift_is_never_called_stable(features):
    """Regression: late 2018 against 2013-2017 had vol_20 at PSI > 1.7 labelled `stable` ("0 warn"),
    because the KS test at the effective sample size could not show significance."""
    columns = drift.matrix_drift(
        window(features, "2013-01-01", "2017-12-31"), window(features, "2018-09-01", "2018-12-31"), FEATURE_NAMES, T
    )
    large = [c for c in columns if c.psi >= T.psi_alert]
    assert large and all(c.level in ("shifted", "drift") for c in large)
    vol_20 = next(c for c in columns if c.name == "vol_20")
    assert vol_20.psi > 1.0 and vol_20.level == "shifted"
    assert f"effective n={vol_20.effective_n:.0f}" in vol_20.detail and "training history" in vol_20.detail
    assert vol_20.history_windows >= drift.HISTORY_MIN_WINDOWS and vol_20.history_psi_max > vol_20.psi
    assert "vol_20" in drift.verdict(columns, T).shifted


def test_beyond_the_training_history_is_drift_even_when_ks_cannot_tell(features):
    """A calm 2003-2007 history against Sep-Dec 2008: MACD moved more than between any two windows of
    the history, although its autocorrelation leaves the KS test without power."""
    columns = drift.matrix_drift(
        window(features, "2003-06-01", "2007-06-30"), window(features, "2008-09-01", "2008-12-31"), FEATURE_NAMES, T
    )
    macd = next(c for c in columns if c.name == "macd")
    assert macd.ks_pvalue > T.ks_pvalue and macd.level == "drift"
    assert macd.psi > macd.history_psi_max and "beyond the training history" in macd.detail
    assert drift.verdict(columns, T).level == "drift"


def test_history_windows_are_chronological_and_as_long_as_the_compared_window():
    reference = np.concatenate([np.zeros(50), np.ones(50), np.zeros(50), np.ones(50)]) + np.linspace(0, 0.01, 200)
    values = drift.history_psi(reference, 50)
    assert len(values) == 4 and all(v > 0.25 for v in values)  # each regime is far from the whole
    assert len(drift.history_psi(reference, 500)) == 2  # at most half the reference per window
