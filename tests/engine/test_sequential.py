"""The shadow experiment's confidence sequence: it holds under A/A and when read every day (the
seeded simulation reports its false-positive rate next to a daily z-test's), and it finds a
challenger that is better."""

from __future__ import annotations

import numpy as np

from models_mgmt.engine import sequential as seq

RUNS, LOOKS, PER_DAY, ALPHA = 1000, 250, 5, 0.05
# A coarser grid of candidate means keeps the 1000-run simulations to seconds (d = 0 is on every
# even grid; the default grid gives the same rates on these seeds).
GRID = 200


def daily_differences(rng: np.random.Generator, edge: float, runs: int = RUNS) -> np.ndarray:
    """Daily mean Brier differences (champion - challenger) of `runs` experiments of LOOKS days with
    PER_DAY predictions a day; the challenger's probabilities lean `edge` further towards the label."""
    y = rng.random((runs, LOOKS, PER_DAY)) < 0.5
    base = np.where(y, 0.55, 0.45)
    champion = np.clip(base + rng.normal(0, 0.25, y.shape), 0.01, 0.99)
    challenger = np.clip(base + edge * (2 * y - 1) + rng.normal(0, 0.25, y.shape), 0.01, 0.99)
    return ((champion - y) ** 2 - (challenger - y) ** 2).mean(axis=2)


def naive_daily_z_rejects(days: np.ndarray, first_look: int = 10) -> np.ndarray:
    """Per run: did a two-sided z-test at ALPHA, run after each day from `first_look`, ever reject?"""
    t = np.arange(1, days.shape[1] + 1)
    mean = np.cumsum(days, axis=1) / t
    var = np.maximum(np.cumsum(days**2, axis=1) / t - mean**2, 1e-12) * t / np.maximum(t - 1, 1)
    z = mean / np.sqrt(var / t)
    return (np.abs(z[:, first_look - 1 :]) > 1.959964).any(axis=1)


def test_simulation_false_positive_rate_is_at_most_alpha_while_a_daily_z_test_is_far_above():
    days = daily_differences(np.random.default_rng(20261204), edge=0.0)
    lower, upper = seq.difference_sequence(days, ALPHA, grid_size=GRID)
    false_positive_rate = float(((lower > 0) | (upper < 0)).any(axis=1).mean())
    naive_rate = float(naive_daily_z_rejects(days).mean())
    print(
        f"A/A, {RUNS} runs x {LOOKS} daily looks: "
        f"CS false positives {false_positive_rate:.3f}, daily z {naive_rate:.3f}"
    )
    assert false_positive_rate <= ALPHA
    assert naive_rate > 3 * ALPHA  # the reason a plain test is not used


def test_simulation_detects_a_better_challenger():
    days = daily_differences(np.random.default_rng(7), edge=0.05)
    lower, upper = seq.difference_sequence(days, ALPHA, grid_size=GRID)
    power = float((lower > 0).any(axis=1).mean())
    print(f"edge 0.05 (mean difference {days.mean():.4f}), {RUNS} runs x {LOOKS} looks: power {power:.3f}")
    assert power >= 0.85
    assert not (upper < 0).any()  # never called worse


def test_bounds_only_narrow_and_cover_the_sample_mean():
    days = daily_differences(np.random.default_rng(1), edge=0.0, runs=1)[0]
    lower, upper = seq.difference_sequence(days, ALPHA)
    assert (np.diff(lower) >= 0).all() and (np.diff(upper) <= 0).all()
    assert (lower <= upper).all() and lower[0] >= -1 and upper[0] <= 1


def test_a_a_experiment_declares_nothing_and_ends_inconclusive_at_its_budget():
    rng = np.random.default_rng(3)
    p = rng.random((300, 3))
    labels = (rng.random((300, 3)) < 0.5).astype(int)
    rows = {
        task: [(i // 3, seq.brier_difference(p[i, k], p[i, k], labels[i, k])) for i in range(300)]
        for k, task in enumerate(("signal", "risk", "pattern"))
    }
    result = seq.compare(rows, ALPHA, max_days=100)
    assert result["state"] == seq.INCONCLUSIVE
    assert all(t["meanDifference"] == 0 and t["lower"] <= 0 <= t["upper"] for t in result["tasks"])
    assert result["alphaPerTask"] == ALPHA / 3
    assert seq.compare(rows, ALPHA, max_days=1000)["state"] == seq.RUNNING


def test_same_day_predictions_are_one_observation():
    days, means, counts = seq.daily_means([("d2", 1.0), ("d1", 0.5), ("d2", 0.0)])
    assert days == ["d1", "d2"] and means == [0.5, 0.5] and counts == [1, 2]
    result = seq.task_result("signal", [("d1", 0.2)] * 50, ALPHA)
    assert result.days == 1 and result.predictions == 50 and result.side == seq.RUNNING


def test_decision_worse_wins_over_better_and_the_history_is_kept_for_the_chart():
    better = seq.task_result("signal", [(d, 0.6) for d in range(60)], ALPHA)
    worse = seq.task_result("risk", [(d, -0.6) for d in range(60)], ALPHA)
    assert better.side == seq.BETTER and worse.side == seq.WORSE
    assert seq.decide([better, worse])[0] == seq.WORSE
    assert seq.decide([better])[0] == seq.BETTER
    assert better.history[-1]["day"] == "59" and len(better.history) == 60
    long = seq.task_result("signal", [(d, 0.0) for d in range(1000)], ALPHA)
    assert len(long.history) <= 201 and long.history[-1]["day"] == "999"
