"""The split is chronological, embargoed by the horizon, and normalised from training only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models_mgmt.engine.dataset import Normalization
from tests.engine.conftest import split_for


@pytest.mark.parametrize("horizon", [1, 5, 20])
def test_no_training_label_window_reaches_the_validation_window(bars, spec, horizon):
    split = split_for(bars, dataclasses.replace(spec, horizon=horizon))
    first_validation_bar = split.val_positions.min()
    # A training label of bar p reads bars p+1..p+H: all of them must precede validation.
    assert (split.train_positions + horizon < first_validation_bar).all()
    assert split.train_positions.max() + horizon == first_validation_bar - 1
    assert split.embargo_samples == horizon
    assert split.train_dates[-1] < split.val_dates[0]


def test_validation_is_the_most_recent_fraction(bars, spec):
    split = split_for(bars, spec)
    total = len(split.x_train) + split.embargo_samples + len(split.x_val)
    assert len(split.x_val) == round(total * spec.validation_split)
    assert np.all(np.diff(split.train_positions) > 0) and np.all(np.diff(split.val_positions) > 0)


def test_normalisation_is_fitted_on_training_only(bars, spec):
    split = split_for(bars, spec)
    assert np.allclose(split.normalization.mean, split.x_train.mean(axis=0), atol=1e-6)
    assert np.allclose(split.normalization.std, split.x_train.std(axis=0), rtol=1e-5)

    # Wild validation-period bars (a crash, a volume spike) must not move the statistics.
    wild = bars.copy()
    start = int(split.val_positions.min())
    wild.iloc[start:, :4] *= np.linspace(1.0, 0.3, len(wild) - start)[:, None]
    wild.iloc[start:, 4] *= 50.0
    assert split_for(wild, spec).normalization == split.normalization


def test_training_data_size_keeps_the_most_recent_samples(bars, spec):
    full = split_for(bars, spec)
    recent = split_for(bars, dataclasses.replace(spec, training_data_size=400))
    assert len(recent.x_train) + recent.embargo_samples + len(recent.x_val) == 400
    assert recent.val_positions.max() == full.val_positions.max()


def test_normalization_round_trips_and_tolerates_constant_features():
    x = np.column_stack([np.arange(10.0), np.full(10, 3.0)])
    norm = Normalization.fit(x, ("a", "b"))
    assert norm.std[1] == 1.0
    assert Normalization.from_dict(norm.to_dict()) == norm
    assert np.isfinite(norm.apply(x)).all()


def test_too_little_data_is_refused(bars, spec):
    with pytest.raises(ValueError, match="not enough bars"):
        split_for(bars.iloc[:100], spec)
