"""The search space is validated like a config, and a study judged walk-forward finds what matters."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

from models_mgmt.engine.search import (
    PRUNING_STARTUP_TRIALS,
    apply_params,
    pruner,
    sampler,
    space_check,
    trial_evaluate,
)
from models_mgmt.engine.spec import TrainingSpec
from tests.synthetic import trending_bars

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
FAMILY = "multitask-mlp"


SPEC = TrainingSpec(
    epochs=6,
    learning_rate=1e-2,
    batch_size=64,
    validation_split=0.2,
    early_stopping_patience=0,
    hidden_sizes=(16,),
    dropout=0.0,
    walk_forward_folds=2,
)


@pytest.mark.parametrize(
    ("space", "key"),
    [
        ({}, "space"),
        ("lr", "space"),
        ({"horizon": {"choices": [5, 10]}}, "horizon"),  # redefines the task: not tunable
        ({"validationSplit": {"low": 0.1, "high": 0.3}}, "validationSplit"),  # moves the holdout
        ({"learning_speed": {"low": 0.1, "high": 0.3}}, "learning_speed"),
        ({"learningRate": {"low": 0.1}}, "learningRate"),
        ({"learningRate": {"low": 0.3, "high": 0.1}}, "learningRate"),
        ({"learningRate": {"low": 0.1, "high": 2.0}}, "learningRate"),
        ({"learningRate": {"low": "a", "high": 0.1}}, "learningRate"),
        ({"learningRate": {"low": 0.0, "high": 0.1, "log": True}}, "learningRate"),
        ({"learningRate": {"low": 0.01, "high": 0.1, "spread": 2}}, "learningRate"),
        ({"epochs": {"low": 1.5, "high": 4}}, "epochs"),
        ({"epochs": {"low": 0, "high": 4}}, "epochs"),
        ({"epochs": {"low": 1, "high": 4, "step": 0}}, "epochs"),
        ({"dropout": {"choices": [0.1, 0.95]}}, "dropout"),
        ({"dropout": {"choices": []}}, "dropout"),
        ({"dropout": {"choices": [0.1, 0.1]}}, "dropout"),
        ({"hiddenSizes": {"low": 1, "high": 4}}, "hiddenSizes"),
        ({"hiddenSizes": {"choices": [[64, "wide"]]}}, "hiddenSizes"),
        ({"batchSize": {"choices": [True]}}, "batchSize"),
    ],
)
def test_a_bad_space_names_the_offending_key(space, key):
    errors = space_check(space, FAMILY)
    assert key in errors, errors


def test_a_good_space_passes_and_its_values_reach_the_spec():
    space = {
        "learningRate": {"low": 1e-4, "high": 1e-1, "log": True},
        "epochs": {"low": 2, "high": 10, "step": 2},
        "hiddenSizes": {"choices": [[32], [64, 32]]},
        "dropout": {"low": 0.0, "high": 0.5},
        "batchSize": {"choices": [32, 64]},
    }
    assert space_check(space, FAMILY) == {}
    spec = apply_params(SPEC, {"hiddenSizes": [64, 32], "epochs": 2, "learningRate": 0.05}, FAMILY)
    assert spec.hidden_sizes == (64, 32) and spec.epochs == 2 and spec.learning_rate == 0.05


def _study(space, *, trials, pruning=False):
    bars = trending_bars()
    study = optuna.create_study(direction="maximize", sampler=sampler("tpe", seed=0), pruner=pruner(pruning))

    def objective(trial):
        report = trial_evaluate(trial, SPEC, bars, space=space, family_name=FAMILY)
        trial.set_user_attr("folds", [f["edge"]["overallScore"] for f in report["folds"]])
        return report["objective"]

    study.optimize(objective, n_trials=trials)
    return study


def test_a_study_finds_the_learning_rate_that_clearly_matters():
    # 1e-7 moves no weight that matters in 6 epochs; 1e-2 learns the trend regimes.
    study = _study({"learningRate": {"choices": [1e-7, 1e-2]}}, trials=6)
    assert study.best_params == {"learningRate": 1e-2}
    by_rate = {t.params["learningRate"]: t.value for t in study.trials}
    assert by_rate[1e-2] > by_rate[1e-7] + 0.05
    assert all(len(t.user_attrs["folds"]) == 2 for t in study.trials)


def test_a_space_with_one_value_ends_with_that_value():
    study = _study({"dropout": {"choices": [0.2]}}, trials=2)
    assert study.best_params == {"dropout": 0.2}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_every_fold_is_reported_to_the_trial_for_pruning():
    study = _study({"learningRate": {"choices": [1e-2]}}, trials=1, pruning=True)
    assert sorted(study.trials[0].intermediate_values) == [1, 2]


def test_the_web_process_can_check_a_space_without_heavy_imports():
    """The API validates a space with `space_check`; optuna and torch load only in the worker."""
    import subprocess
    import sys

    code = (
        "import sys; from models_mgmt.engine.search import space_check; "
        "import models_mgmt.engine.walk_forward; "
        "assert space_check({'dropout': {'low': 0.0, 'high': 0.5}}, 'multitask-mlp') == {}; "
        "heavy = [m for m in ('torch', 'optuna', 'sklearn', 'sqlalchemy') if m in sys.modules]; "
        "assert not heavy, f'{heavy} imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_clearly_weak_trial_is_pruned_after_its_second_fold():
    bars = trending_bars()
    space = {"learningRate": {"choices": [1e-7, 1e-2]}}
    spec = dataclasses.replace(SPEC, walk_forward_folds=3, epochs=4)
    study = optuna.create_study(direction="maximize", sampler=sampler("tpe", seed=0), pruner=pruner(True))
    for rate in (1e-2,) * PRUNING_STARTUP_TRIALS + (1e-7,):
        study.enqueue_trial({"learningRate": rate})
    study.optimize(
        lambda trial: trial_evaluate(trial, spec, bars, space=space, family_name=FAMILY)["objective"],
        n_trials=PRUNING_STARTUP_TRIALS + 1,
    )
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * PRUNING_STARTUP_TRIALS + [optuna.trial.TrialState.PRUNED]
    # never judged on the noisy first fold alone: stopped after fold 2 of 3
    assert list(study.trials[-1].intermediate_values) == [1, 2]
