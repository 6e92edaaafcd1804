"""Anytime-valid comparison of a shadow challenger with the champion (numpy only, no Django).

Both versions answer the same request, so each resolved prediction gives one PAIRED difference per
task: `d = champion's Brier loss - challenger's Brier loss`, in [-1, 1], positive when the
challenger was closer to what the market did. Predictions made on the same day share their
market (and, through overlapping horizons, their labels), so they are averaged into one
observation per day (clustering) before the test; a day is one observation, still in [-1, 1].

The test is a confidence sequence (CS) for the running mean of the daily differences: the
"hedged capital" CS of Waudby-Smith & Ramdas, "Estimating means of bounded random variables by
betting", JRSS-B 2023, with their predictable plug-in bets, written from the paper's formulas (the
`confseq` package that implements it is unmaintained). For X_i in [0, 1] and a candidate mean m:

    mu_t       = (1/2 + sum_{i<=t} X_i) / (t + 1)
    sigma2_t   = (1/4 + sum_{i<=t} (X_i - mu_i)^2) / (t + 1)
    lambda_t   = sqrt(2 log(2/alpha) / (sigma2_{t-1} t log(1 + t)))            (predictable)
    K+_t(m)    = prod_{i<=t} (1 + min(lambda_i, c/m) (X_i - m))
    K-_t(m)    = prod_{i<=t} (1 - min(lambda_i, c/(1-m)) (X_i - m))
    K_t(m)     = (K+_t(m) + K-_t(m)) / 2
                 (the paper's hedge with theta = 1/2 is max(K+/2, K-/2) <= K_t(m): this one is a
                 nonnegative martingale too, and excludes at least as much)

K_t(m) is a nonnegative martingale when m is the mean, so by Ville's inequality it ever reaches
1/alpha with probability <= alpha: the CS is every m whose capital has not (running intersection:
a candidate once excluded stays out), on a grid of m. With probability >= 1 - alpha EVERY day's
CS holds the mean, so the CS may be read after every day without inflating false wins (a z-test
read daily does not have this property: see tests/engine/test_sequential.py). The differences are
mapped to [0, 1] by X = (d + 1) / 2 and the bounds back by d = 2 X - 1; m = 1/2 (d = 0) is on the
grid, so "the CS lies above 0" is exact however coarse the grid. Betting beats the
empirical-Bernstein CS of the same paper here: daily differences vary little inside [-1, 1], where
its bets are capped at c while these may reach c/m.

Several tasks: alpha is split over them (Bonferroni), so "some task's CS excludes 0 when no task
differs" has probability <= alpha. The decision rule (`decide`):
  - challenger_worse: some task's CS lies entirely below 0;
  - challenger_better: no task's CS lies below 0 and at least one lies entirely above 0;
  - inconclusive: neither, once the budget (days, or resolved predictions) is used up;
  - running: otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RUNNING, BETTER, WORSE, INCONCLUSIVE = "running", "challenger_better", "challenger_worse", "inconclusive"
# The truncation of the bets (the paper's c, which it suggests at 1/2 or 3/4): a bet on candidate m
# is at most c/m (or c/(1-m)), so the capital never loses more than the fraction c in one day.
LAMBDA_MAX = 0.75
# Candidate means k/GRID_SIZE in X space: a resolution of 0.002 in the paired difference.
GRID_SIZE = 1000


def brier_difference(champion: float, challenger: float, label: int) -> float:
    """Champion's loss minus challenger's loss on one resolved prediction: in [-1, 1], > 0 when the
    challenger's probability was closer to the label."""
    return (champion - label) ** 2 - (challenger - label) ** 2


def confidence_sequence(x: Any, alpha: float, *, grid_size: int = GRID_SIZE) -> tuple[Any, Any]:
    """Lower and upper bounds after each observation of a CS for the mean of x in [0, 1].

    `x` has shape (..., t): the last axis is time, any leading axes are independent runs (the
    simulation tests evaluate a thousand at once). The bounds are points of the grid k/grid_size
    (grid_size even, so 1/2 is one), running intersections: they only ever narrow.
    """
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    t = x.shape[-1]
    if t == 0:
        empty = np.zeros(x.shape, dtype=np.float64)
        return empty, empty
    i = np.arange(1, t + 1, dtype=np.float64)
    mu = (0.5 + np.cumsum(x, axis=-1)) / (i + 1)  # mu_i, uses X_1..X_i
    sigma2 = (0.25 + np.cumsum((x - mu) ** 2, axis=-1)) / (i + 1)
    lead = x.shape[:-1]
    sigma2_prev = np.concatenate([np.full((*lead, 1), 0.25), sigma2[..., :-1]], axis=-1)
    lam = np.sqrt(2.0 * math.log(2.0 / alpha) / (sigma2_prev * i * np.log1p(i)))
    grid = np.arange(1, grid_size) / grid_size
    threshold = math.log(1.0 / alpha) - math.log(0.5)  # log K+ + log K- hedge: (K+ + K-)/2 >= 1/alpha
    # excluded[k]: the first time index at which candidate grid[k]'s capital reached 1/alpha (t: never)
    excluded = np.empty((grid.size, *lead), dtype=np.int64)
    for k, m in enumerate(grid):
        up = np.cumsum(np.log1p(np.minimum(lam, LAMBDA_MAX / m) * (x - m)), axis=-1)
        down = np.cumsum(np.log1p(-np.minimum(lam, LAMBDA_MAX / (1 - m)) * (x - m)), axis=-1)
        hit = np.logaddexp(up, down) >= threshold
        excluded[k] = np.where(hit.any(axis=-1), hit.argmax(axis=-1), t)
    # The lower bound at time s is the smallest candidate not excluded by s: every one below it is.
    from_below = np.maximum.accumulate(excluded, axis=0)
    from_above = np.maximum.accumulate(excluded[::-1], axis=0)
    lower = np.empty(x.shape, dtype=np.float64)
    upper = np.empty(x.shape, dtype=np.float64)
    last = grid.size - 1
    for step in range(t):
        below = (from_below <= step).sum(axis=0)
        above = (from_above <= step).sum(axis=0)
        lower[..., step] = np.where(below <= last, grid[np.minimum(below, last)], 1.0)
        upper[..., step] = np.where(above <= last, grid[last - np.minimum(above, last)], 0.0)
    return lower, upper


def difference_sequence(days: Any, alpha: float, *, grid_size: int = GRID_SIZE) -> tuple[Any, Any]:
    """`confidence_sequence` for daily differences in [-1, 1]: bounds on the mean difference."""
    lower, upper = confidence_sequence((np.asarray(days, dtype=np.float64) + 1.0) / 2.0, alpha, grid_size=grid_size)
    return 2.0 * lower - 1.0, 2.0 * upper - 1.0


def daily_means(rows: Iterable[tuple[Any, float]]) -> tuple[list[Any], list[float], list[int]]:
    """(day, difference) pairs -> days in order, the mean difference of each, how many on each."""
    sums: dict[Any, float] = {}
    counts: dict[Any, int] = {}
    for day, value in rows:
        sums[day] = sums.get(day, 0.0) + float(value)
        counts[day] = counts.get(day, 0) + 1
    days = sorted(sums)
    return days, [sums[d] / counts[d] for d in days], [counts[d] for d in days]


@dataclass(frozen=True)
class TaskResult:
    task: str
    days: int
    predictions: int
    mean: float | None  # the days' mean paired difference (positive: challenger better)
    lower: float | None
    upper: float | None
    history: list[dict[str, Any]]  # per day: {day, mean, lower, upper}

    @property
    def side(self) -> str:
        if self.lower is not None and self.lower > 0:
            return BETTER
        if self.upper is not None and self.upper < 0:
            return WORSE
        return RUNNING

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "days": self.days,
            "predictions": self.predictions,
            "meanDifference": self.mean,
            "lower": self.lower,
            "upper": self.upper,
            "side": self.side,
            "history": self.history,
        }


def task_result(task: str, rows: Iterable[tuple[Any, float]], alpha: float, *, history_points: int = 200) -> TaskResult:
    """The CS of one task over (day, difference) rows; `history` keeps at most `history_points`
    evenly spread days (for the chart) and always the last."""
    days, means, counts = daily_means(rows)
    if not days:
        return TaskResult(task, 0, 0, None, None, None, [])
    lower, upper = difference_sequence(means, alpha)
    running = np.cumsum(means) / np.arange(1, len(means) + 1)
    step = max(1, math.ceil(len(days) / history_points))
    keep = sorted({*range(0, len(days), step), len(days) - 1})
    history = [
        {
            "day": str(days[k]),
            "mean": round(float(running[k]), 6),
            "lower": round(float(lower[k]), 6),
            "upper": round(float(upper[k]), 6),
        }
        for k in keep
    ]
    return TaskResult(
        task,
        len(days),
        int(sum(counts)),
        round(float(running[-1]), 6),
        round(float(lower[-1]), 6),
        round(float(upper[-1]), 6),
        history,
    )


def decide(
    results: Sequence[TaskResult], *, max_days: int | None = None, max_predictions: int | None = None
) -> tuple[str, str]:
    """(state, reason) from the tasks' CSs (each already at its Bonferroni share of alpha)."""
    worse = [r.task for r in results if r.side == WORSE]
    better = [r.task for r in results if r.side == BETTER]
    if worse:
        return WORSE, f"the confidence sequence lies below 0 for {', '.join(worse)}"
    if better:
        return BETTER, f"the confidence sequence lies above 0 for {', '.join(better)} and below 0 for no task"
    days = max((r.days for r in results), default=0)
    predictions = max((r.predictions for r in results), default=0)
    if max_days is not None and days >= max_days:
        return INCONCLUSIVE, f"no difference after {days} days (budget {max_days})"
    if max_predictions is not None and predictions >= max_predictions:
        return INCONCLUSIVE, f"no difference after {predictions} predictions (budget {max_predictions})"
    return RUNNING, f"{days} day(s), {predictions} resolved prediction(s): no task's sequence excludes 0 yet"


def compare(
    rows: Mapping[str, Iterable[tuple[Any, float]]],
    alpha: float,
    *,
    max_days: int | None = None,
    max_predictions: int | None = None,
) -> dict[str, Any]:
    """Per task (day, difference) rows -> each task's CS at alpha / tasks, and the decision."""
    share = alpha / max(len(rows), 1)
    results = [task_result(task, task_rows, share) for task, task_rows in rows.items()]
    state, reason = decide(results, max_days=max_days, max_predictions=max_predictions)
    return {
        "state": state,
        "reason": reason,
        "alpha": alpha,
        "alphaPerTask": share,
        "method": "hedged-capital betting confidence sequence (Waudby-Smith & Ramdas 2023), "
        "daily clusters, Bonferroni over tasks",
        "tasks": [r.as_dict() for r in results],
    }
