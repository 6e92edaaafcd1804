"""Scores, baselines and the backtest on hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models_mgmt.engine.evaluation import backtest, majority_baselines, task_metrics

KEYS = {"patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"}


def test_task_metrics_and_overall_score():
    labels = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [1, 1, 1]], dtype=np.float32)
    probs = np.array([[0.9, 0.1, 0.2], [0.6, 0.4, 0.7], [0.7, 0.8, 0.1], [0.2, 0.3, 0.9]])
    metrics = task_metrics(probs, labels)
    assert set(metrics) == KEYS
    assert metrics["signalAccuracy"] == 0.5
    assert metrics["riskAssessment"] == 0.75
    assert metrics["patternRecognition"] == 0.75
    assert metrics["overallScore"] == pytest.approx((0.5 + 0.75 + 0.75) / 3, abs=1e-6)


def test_baseline_is_the_training_majority_scored_on_validation():
    train = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    val = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=np.float32)
    baselines = majority_baselines(train, val)
    assert baselines["signalAccuracy"] == 0.75  # always "up"
    assert baselines["riskAssessment"] == 0.25  # always "calm"
    assert baselines["patternRecognition"] == 0.75  # always "no breakout"


def test_backtest_long_flat_after_fees():
    p_up = np.array([0.9, 0.8, 0.1, 0.7])
    returns = np.array([0.01, -0.02, 0.03, 0.01])
    fee = 0.001
    result = backtest(p_up, returns, fee=fee)
    strategy = np.array([0.01 - fee, -0.02, -fee, 0.01 - fee])  # enter, hold, exit, re-enter
    equity = np.cumprod(1 + strategy)
    assert result["trades"] == 3
    assert result["cumulativeReturn"] == pytest.approx(equity[-1] - 1, abs=1e-6)
    assert result["hitRate"] == pytest.approx(2 / 3, abs=1e-6)
    assert result["maxDrawdown"] == pytest.approx(1 - equity[2] / equity[0], abs=1e-6)
    expected_sharpe = strategy.mean() / strategy.std(ddof=1) * math.sqrt(252)
    assert result["sharpe"] == pytest.approx(expected_sharpe, abs=1e-5)
    hold = np.cumprod(1 + np.array([0.01 - fee, -0.02, 0.03, 0.01]))
    assert result["buyHoldReturn"] == pytest.approx(hold[-1] - 1, abs=1e-6)
    assert result["fee"] == fee


def test_backtest_never_long_is_flat():
    result = backtest(np.zeros(5), np.full(5, 0.01), fee=0.001)
    assert result["trades"] == 0
    assert result["cumulativeReturn"] == 0.0
    assert result["maxDrawdown"] == 0.0
    assert result["hitRate"] == 0.0
    assert result["sharpe"] == 0.0
