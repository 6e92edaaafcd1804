"""Shared data for the engine tests: a recent slice of the real S&P 500 bars and a small spec.

A slice keeps every test to a fraction of a second while still exercising warm-up, labels and
the embargo on real prices.
"""

from __future__ import annotations

import pytest

from models_mgmt.engine.bars import load_builtin
from models_mgmt.engine.spec import TrainingSpec


@pytest.fixture(scope="session")
def sp500():
    return load_builtin("sp500")


@pytest.fixture(scope="session")
def bars(sp500):
    return sp500.iloc[-1000:].copy()


@pytest.fixture
def spec() -> TrainingSpec:
    return TrainingSpec(
        epochs=4,
        learning_rate=3e-3,
        batch_size=64,
        validation_split=0.2,
        early_stopping_patience=0,
        hidden_sizes=(16, 8),
        dropout=0.1,
    )


def split_for(bars, spec: TrainingSpec):
    return spec.split(bars)


@pytest.fixture
def split(bars, spec):
    return split_for(bars, spec)
