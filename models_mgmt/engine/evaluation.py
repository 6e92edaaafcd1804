"""Scores on the validation window: task accuracies, their naive baselines, and a backtest.

A score means little alone: a 55% signal accuracy is no skill in a market that rose 56% of the
days. So every metric is reported beside the majority-class baseline of the *training* window
scored on the validation window, and the signal is traded against buy-and-hold on the same bars.

`overallScore` is the mean of the three task accuracies, and the product's single `accuracy`
figure is defined as `overallScore`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .labels import METRIC_OF_TASK, TASKS

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported

TRADING_DAYS_PER_YEAR = 252  # daily bars; other timeframes: timeframes.Timeframe.bars_per_year


def _with_overall(scores: dict[str, float]) -> dict[str, float]:
    scores["overallScore"] = sum(scores[METRIC_OF_TASK[t]] for t in TASKS) / len(TASKS)
    return {k: round(v, 6) for k, v in scores.items()}


def task_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{patternRecognition, signalAccuracy, riskAssessment, overallScore}: accuracy at P > 0.5."""
    predicted = probabilities > 0.5
    truth = labels > 0.5
    return _with_overall(
        {METRIC_OF_TASK[t]: float((predicted[:, i] == truth[:, i]).mean()) for i, t in enumerate(TASKS)}
    )


def majority_baselines(train_labels: np.ndarray, val_labels: np.ndarray) -> dict[str, float]:
    """Same keys as `task_metrics`: always answer the training window's majority class."""
    majority = train_labels.mean(axis=0) > 0.5
    truth = val_labels > 0.5
    return _with_overall({METRIC_OF_TASK[t]: float((truth[:, i] == majority[i]).mean()) for i, t in enumerate(TASKS)})


def _equity_stats(returns: np.ndarray, periods_per_year: int) -> tuple[float, float, float]:
    """Cumulative return, annualised Sharpe ratio (risk-free rate 0) and maximum drawdown."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    equity = np.cumprod(1.0 + returns)
    cumulative = float(equity[-1] - 1.0) if len(equity) else 0.0
    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    sharpe = float(returns.mean() / std * math.sqrt(periods_per_year)) if std > 0 else 0.0
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))
    drawdown = float((1.0 - np.concatenate([[1.0], equity]) / peak).max())
    return cumulative, sharpe, drawdown


def backtest(
    p_up: np.ndarray,
    next_returns: np.ndarray,
    *,
    fee: float,
    periods_per_year: int = TRADING_DAYS_PER_YEAR,
) -> dict[str, float | int]:
    """Long/flat trading of the signal over the validation bars, after costs.

    At the close of each validation bar t the strategy is long one unit when P(up) > 0.5 and flat
    otherwise (no shorting: the index has a long-run upward drift that a short side fights), and
    earns close[t+1]/close[t]-1 while long. Every position change (entering or leaving; the book
    starts flat) costs `fee` as a fraction of equity. Buy-and-hold holds the same bars and pays
    the fee once, to enter.

    `maxDrawdown` is the largest peak-to-trough fall of equity as a positive fraction (0.2 = 20%);
    `hitRate` is the share of long bars that made money (0 when never long); `trades` counts
    position changes; `sharpe` is annualised with `periods_per_year` (the bars in a year of the
    data's timeframe, returned as `barsPerYear`) and a zero risk-free rate.
    """
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    position = (p_up > 0.5).astype(np.float64)
    changes = np.abs(np.diff(np.concatenate([[0.0], position])))
    strategy = position * next_returns - fee * changes
    cumulative, sharpe, drawdown = _equity_stats(strategy, periods_per_year)
    long_bars = position > 0
    hit_rate = float((next_returns[long_bars] > 0).mean()) if long_bars.any() else 0.0

    hold = next_returns.astype(np.float64).copy()
    if len(hold):
        hold[0] -= fee
    hold_cumulative, hold_sharpe, hold_drawdown = _equity_stats(hold, periods_per_year)
    return {
        "cumulativeReturn": round(cumulative, 6),
        "sharpe": round(sharpe, 6),
        "maxDrawdown": round(_non_negative(drawdown), 6),
        "hitRate": round(hit_rate, 6),
        "trades": int(changes.sum()),
        "buyHoldReturn": round(hold_cumulative, 6),
        "buyHoldSharpe": round(hold_sharpe, 6),
        "buyHoldMaxDrawdown": round(_non_negative(hold_drawdown), 6),
        "fee": fee,
        "barsPerYear": periods_per_year,
    }


def _non_negative(value: float) -> float:
    """Guard against -0.0 and NaN in JSON (an empty window has no drawdown)."""
    return 0.0 if not math.isfinite(value) or value <= 0 else value
