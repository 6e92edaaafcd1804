"""Hyperparameter search: the space a study may explore, and one trial judged walk-forward.

A search picks the recipe that scored best, so the score it picks on must be one the recipe could
not have fitted: every trial is judged by `walk_forward` (purged folds before the final holdout),
and the holdout is left for the study's winner alone.

The space (wire names) maps a tunable field to a dimension:

* `{"choices": [v1, v2, ...]}` -- one of the given values (each must be a valid value of the field);
* `{"low": a, "high": b}` with optional `"log": true` (a > 0) and, for integers, `"step": s` --
  a number in [a, b], both inside the field's bounds.

Only fields that change how a network learns are tunable. `horizon` and `breakoutWindow` are not:
they redefine the labels, so trials would be scored on different tasks and different holdouts, and
the best "score" would be that of the easiest question. `validationSplit` and `trainingDataSize` are
not: they move the holdout. `seed`, `freezeTrunk` (every fold starts fresh) and `feePerTrade`
(backtest only) change nothing a fold scores.

The optimisation maximises the report's `objective`: the folds' mean edge of `overallScore` over
its majority-class baseline. After each fold the running mean is reported to the trial, so a
pruner can stop a weak trial before its last fold.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .families import FAMILIES, Param
from .spec import HYPERPARAMETER_FIELDS, TrainingSpec
from .walk_forward import walk_forward

if TYPE_CHECKING:
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

# Wire name -> (TrainingSpec attribute, its bounds). Config fields first, then family hyperparameters.
CONFIG_PARAMS: dict[str, tuple[str, Param]] = {
    "epochs": ("epochs", Param(int, 20, 1, 10000)),
    "learningRate": ("learning_rate", Param(float, 1e-3, 1e-12, 1.0)),
    "batchSize": ("batch_size", Param(int, 64, 1, 65536)),
    "earlyStoppingPatience": ("early_stopping_patience", Param(int, 10, 0, 10000)),
}
TUNABLE_HYPERPARAMETERS = ("hiddenSizes", "dropout", "weightDecay")
SAMPLERS = ("tpe", "random")
PRUNING_STARTUP_TRIALS = 5  # complete trials before any is pruned
PRUNING_WARMUP_FOLDS = 2  # optuna's n_warmup_steps: a trial is judged from its second fold's report on
# What the CLI and the dashboard offer when nothing else is asked: how a network learns, not the task.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "learningRate": {"low": 1e-4, "high": 1e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "weightDecay": {"low": 1e-6, "high": 1e-2, "log": True},
    "hiddenSizes": {"choices": [[32], [64, 32], [128, 64]]},
}
MAX_CHOICES = 32


def tunable(family_name: str) -> dict[str, tuple[str, Param]]:
    """Every tunable wire name of a family with its spec attribute and bounds."""
    family = FAMILIES[family_name]
    hyper = {key: (HYPERPARAMETER_FIELDS[key], family.params[key]) for key in TUNABLE_HYPERPARAMETERS}
    return {**CONFIG_PARAMS, **hyper}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _dimension_error(param: Param, dimension: Any) -> str | None:
    if not isinstance(dimension, dict):
        return 'must be an object: {"choices": [...]} or {"low": ..., "high": ...}'
    if "choices" in dimension:
        extra = sorted(set(dimension) - {"choices"})
        if extra:
            return f"unknown keys beside choices: {', '.join(extra)}"
        choices = dimension["choices"]
        if not isinstance(choices, list) or not 1 <= len(choices) <= MAX_CHOICES:
            return f"choices must be a list of 1 to {MAX_CHOICES} values"
        for value in choices:
            problem = param.check(value)
            if problem:
                return f"choice {value!r}: {problem}"
        if len({repr(v) for v in choices}) != len(choices):
            return "choices must not repeat"
        return None
    if param.kind not in (int, float):
        return "takes choices only"
    extra = sorted(set(dimension) - {"low", "high", "log", "step"})
    if extra:
        return f"unknown keys: {', '.join(extra)} (allowed: low, high, log, step, or choices)"
    if "low" not in dimension or "high" not in dimension:
        return "needs low and high (or choices)"
    low, high, log, step = dimension["low"], dimension["high"], dimension.get("log", False), dimension.get("step")
    for name, value in (("low", low), ("high", high)):
        problem = param.check(value) if _number(value) else "must be a number"
        if problem:
            return f"{name}: {problem}"
        if param.kind is int and not isinstance(value, int):
            return f"{name}: must be an integer"
    if low > high:
        return "low must not exceed high"
    if not isinstance(log, bool):
        return "log must be true or false"
    if log and low <= 0:
        return "log needs low > 0"
    if step is not None:
        if param.kind is not int or isinstance(step, bool) or not isinstance(step, int) or step < 1:
            return "step must be a positive integer (integer fields only)"
        if log:
            return "step and log cannot be combined"
    return None


def space_check(space: Any, family_name: str) -> dict[str, str]:
    """Per-key errors of a search space (empty: valid); unknown keys name the tunable ones."""
    if not isinstance(space, dict) or not space:
        return {"space": "must be a non-empty object of tunable fields"}
    allowed = tunable(family_name)
    errors: dict[str, str] = {}
    for key, dimension in space.items():
        if key not in allowed:
            errors[key] = f"not tunable; tunable fields: {', '.join(allowed)}"
            continue
        problem = _dimension_error(allowed[key][1], dimension)
        if problem:
            errors[key] = problem
    return errors


def suggest(trial: Any, space: dict[str, Any], family_name: str) -> dict[str, Any]:
    """Ask an Optuna trial for one value of every dimension (list choices travel as JSON text)."""
    allowed = tunable(family_name)
    params: dict[str, Any] = {}
    for key, dimension in space.items():
        if "choices" in dimension:
            # Optuna's categorical values must be scalars: a layer list is offered as its JSON.
            options = [json.dumps(v) if isinstance(v, list) else v for v in dimension["choices"]]
            params[key] = trial.suggest_categorical(key, options)
        elif allowed[key][1].kind is int:
            step, log = dimension.get("step") or 1, dimension.get("log", False)
            params[key] = trial.suggest_int(key, dimension["low"], dimension["high"], step=step, log=log)
        else:
            params[key] = trial.suggest_float(
                key, float(dimension["low"]), float(dimension["high"]), log=dimension.get("log", False)
            )
    return decode_params(params, space)


def decode_params(raw: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """A trial's values as the config takes them: Optuna keeps a list choice as its JSON text."""
    return {
        key: json.loads(value) if isinstance(value, str) and "choices" in space.get(key, {}) else value
        for key, value in raw.items()
    }


def apply_params(spec: TrainingSpec, params: dict[str, Any], family_name: str) -> TrainingSpec:
    """`spec` with the trial's values (wire names) put in."""
    allowed = tunable(family_name)
    changes: dict[str, Any] = {}
    for key, value in params.items():
        attr, param = allowed[key]
        changes[attr] = tuple(int(v) for v in value) if key == "hiddenSizes" else param.kind(value)
    updated = dataclasses.replace(spec, **changes)
    if updated.early_stopping_patience > updated.epochs:
        updated = dataclasses.replace(updated, early_stopping_patience=updated.epochs)
    return updated


def sampler(name: str, seed: int | None = None) -> Any:
    import optuna  # heavy: the search runs in the training worker only

    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of: {', '.join(SAMPLERS)}")
    return optuna.samplers.TPESampler(seed=seed) if name == "tpe" else optuna.samplers.RandomSampler(seed=seed)


def pruner(enabled: bool) -> Any:
    import optuna  # heavy: the search runs in the training worker only

    # The median rule on the running objective, from the second fold on and once PRUNING_STARTUP_TRIALS
    # trials completed. The first fold trains on the least data and is the noisiest: pruning on it
    # (with two finished trials to compare against) pruned 57 of 60 trials of a real S&P 500 study.
    if not enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNING_STARTUP_TRIALS, n_warmup_steps=PRUNING_WARMUP_FOLDS)


def trial_evaluate(
    trial: Any,
    spec: TrainingSpec,
    data: pd.DataFrame,
    *,
    space: dict[str, Any],
    family_name: str,
    should_stop: Callable[[], bool] | Any | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """Run one trial: suggest its values, score them walk-forward reporting every fold's running
    objective to `trial`. The report (with `params`), None when stopped; raises optuna.TrialPruned."""
    import optuna  # heavy: the search runs in the training worker only

    params = suggest(trial, space, family_name)
    trial_spec = apply_params(spec, params, family_name)
    edges: list[float] = []

    def report(fold: dict[str, Any]) -> None:
        edges.append(fold["edge"]["overallScore"])
        if on_fold is not None:
            on_fold(fold)
        trial.report(sum(edges) / len(edges), step=fold["fold"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {fold['fold']}")

    result = walk_forward(trial_spec, data, on_fold=report, should_stop=should_stop)
    return None if result is None else {**result, "params": params}
