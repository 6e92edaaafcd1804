"""Resolve a partial FineTuningConfig into a complete one: defaults filled in, every field checked
against its bounds and the model's data, the dataset and base version looked up.

The API serializer (after parsing JSON types) and the `finetune` command (after parsing its
options) both call `training_config_resolve`, so a config means the same thing from either edge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from models_mgmt import selectors
from models_mgmt.choices import ActivationPolicy, VersionStatus
from models_mgmt.engine import timeframes
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.engine.families import FAMILIES, LLM_LORA, MULTITASK_MLP
from models_mgmt.engine.placement import (
    DEVICES,
    DISTRIBUTED_KEYS,
    DistributedSettings,
    group_problems,
    world_problem,
)
from models_mgmt.errors import InvalidInput
from models_mgmt.models import AIModel, BaseModel, Dataset, ModelVersion

FIELDS = frozenset(
    {
        "modelName", "baseModel", "dataset", "trainingDataSize", "startDate", "endDate", "epochs", "learningRate",
        "batchSize", "validationSplit", "earlyStoppingPatience", "activationPolicy", "hyperparameters",
        "evaluation", "walkForwardFolds", "device", "distributed",
    }
)  # fmt: skip
# wire name -> (type, lowest, highest, whether the lowest is excluded)
BOUNDS: dict[str, tuple[type, float, float | None, bool]] = {
    "epochs": (int, 1, 10000, False),
    "learningRate": (float, 0, 1, True),
    "batchSize": (int, 1, 65536, False),
    "validationSplit": (float, 0, 0.5, True),
    "earlyStoppingPatience": (int, 0, None, False),
    "trainingDataSize": (int, 1, None, False),
    "walkForwardFolds": (int, 2, 10, False),
}
# "validation": scored on the last validationSplit window; "walk_forward": also on purged folds before it.
EVALUATIONS = ("validation", "walk_forward")
DEFAULT_WALK_FORWARD_FOLDS = 4


@dataclass(frozen=True)
class ResolvedTraining:
    config: FineTuningConfig
    dataset: Dataset
    base_version: ModelVersion | None


# One wording per kind of mistake, whether the API's serializer or this service finds it.
TYPE_MESSAGES = {int: "must be an integer", float: "must be a number"}


def range_message(name: str) -> str:
    _, low, high, open_low = BOUNDS[name]
    lowest = f"greater than {low}" if open_low else f"at least {low}"
    return f"must be {lowest}" + (f" and at most {high}" if high is not None else "")


def _bound_error(name: str, value: Any) -> str | None:
    kind, low, high, open_low = BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        return TYPE_MESSAGES[kind]
    if (value <= low if open_low else value < low) or (high is not None and value > high):
        return range_message(name)
    return None


def choice_message(choices: tuple[str, ...] | list[str]) -> str:
    return f"choose one of: {', '.join(choices)}"


def _distributed_check(value: Any, batch_size: Any) -> tuple[DistributedSettings | None, list[str] | dict[str, Any]]:
    """The torchrun group a job asks for, or why it cannot be: per key, or for the whole group.

    The engine's checks (placement.group_problems, world_problem) decide; only the shape is checked
    here: whether the claiming worker has the CPUs or GPUs for it is its decision (the web process
    cannot know that machine, and never imports torch).
    """
    if value is None:
        return None, []
    if not isinstance(value, dict):
        return None, [f"must be null or an object with {', '.join(DISTRIBUTED_KEYS)}"]
    unknown = sorted(set(value) - set(DISTRIBUTED_KEYS))
    errors: dict[str, list[str]] = {key: [f"unknown key; allowed: {', '.join(DISTRIBUTED_KEYS)}"] for key in unknown}
    problems = group_problems(value.get("nprocPerNode"), value.get("nnodes", 1), value.get("rdzvEndpoint"))
    errors.update({key: [problem] for key, problem in problems.items()})
    if errors:
        return None, errors
    world = value["nprocPerNode"] * value.get("nnodes", 1)
    if problem := world_problem(world, batch_size if isinstance(batch_size, int) else None):
        return None, [problem]
    return DistributedSettings.from_wire(value), []


def _shown(dataset: Dataset, stamp: dt.datetime | None) -> str | None:
    return timeframes.format_time(timeframes.timeframe(dataset.timeframe), stamp) if stamp else None


def training_config_resolve(*, model: AIModel, fields: Mapping[str, Any]) -> ResolvedTraining:
    """A complete config from the given fields (wire names, typed values; bar times as `date`, or
    as an aware `datetime` for intraday bars).

    Raises InvalidInput naming every offending field at once.
    """
    errors: dict[str, Any] = {}
    unknown = sorted(set(fields) - FIELDS)
    for key in unknown:
        errors[key] = ["unknown field"]
    for key in BOUNDS:
        if fields.get(key) is not None:
            message = _bound_error(key, fields[key])
            if message:
                errors[key] = [message]
    if "modelName" in fields and fields["modelName"] != model.name:
        errors["modelName"] = [f"does not match the model in the URL ('{model.name}')"]
    policy = fields.get("activationPolicy", ActivationPolicy.MANUAL)
    if policy not in ActivationPolicy.values:
        errors["activationPolicy"] = [choice_message(ActivationPolicy.values)]

    family = FAMILIES[model.family]
    evaluation = fields.get("evaluation", "validation")
    if evaluation not in EVALUATIONS:
        errors["evaluation"] = [choice_message(EVALUATIONS)]
    elif evaluation == "walk_forward" and family is LLM_LORA:
        errors["evaluation"] = [f"walk_forward is offered for the {FAMILIES['multitask-mlp'].name} family only"]
    family_defaults = family.config_defaults
    batch_size = fields.get("batchSize", family_defaults.get("batchSize", settings.DEFAULT_BATCH_SIZE))
    device = fields.get("device", "auto" if family is LLM_LORA else settings.DEFAULT_TRAINING_DEVICE)
    if device not in DEVICES:
        errors["device"] = [choice_message(DEVICES)]
    elif device != "auto" and family is LLM_LORA:
        errors["device"] = [
            f"{LLM_LORA.name} chooses its device itself (the worker's GPU when it has one, 4-bit loading "
            "only there); leave device 'auto'"
        ]
    distributed, problems = _distributed_check(fields.get("distributed"), None if "batchSize" in errors else batch_size)
    if problems:
        errors["distributed"] = problems
    elif distributed is not None and family is LLM_LORA:
        errors["distributed"] = [
            f"{LLM_LORA.name} trains in the worker's own process (one GPU or the CPU); torchrun groups are "
            f"offered for the {MULTITASK_MLP.name} family only"
        ]
    epochs = fields.get("epochs", family_defaults.get("epochs", settings.DEFAULT_TRAINING_EPOCHS))
    patience = fields.get("earlyStoppingPatience", min(settings.DEFAULT_EARLY_STOPPING_PATIENCE, epochs))
    if "epochs" not in errors and "earlyStoppingPatience" not in errors and patience > epochs:
        errors["earlyStoppingPatience"] = [f"must be between 0 and epochs ({epochs})"]

    dataset_name = fields.get("dataset") or (
        model.default_dataset.name if model.default_dataset else settings.DEFAULT_DATASET
    )
    dataset = Dataset.objects.filter(name=dataset_name).first()
    if dataset is None:
        errors["dataset"] = [f"unknown dataset '{dataset_name}'"]
    size = fields.get("trainingDataSize")
    # A date bounds whole UTC days (a daily bar's date); a timestamp bounds intraday bars exactly.
    start: dt.date | dt.datetime | None = fields.get("startDate")
    end: dt.date | dt.datetime | None = fields.get("endDate")
    window_bars = 0
    if start and end and timeframes.window_start(start) >= timeframes.window_start(end):
        errors["endDate"] = ["must be after startDate"]
    elif dataset is not None:
        window_bars = (
            selectors.dataset_bars(dataset, start=start, end=end).count() if (start or end) else dataset.bar_count
        )
        if window_bars == 0:
            errors["startDate" if start else "endDate"] = [
                f"dataset '{dataset.name}' has no bars in this window "
                f"({_shown(dataset, dataset.first_bar_at)} to {_shown(dataset, dataset.last_bar_at)} available)"
            ]
        elif size is not None and "trainingDataSize" not in errors and size > window_bars:
            errors["trainingDataSize"] = [
                f"dataset '{dataset.name}' holds {window_bars} bars in the window; ask for at most that"
            ]

    base_version = None
    base_name = fields.get("baseModel")
    if family is LLM_LORA:
        # llm-lora: baseModel names a registered base model (default: the model's own); every run
        # trains a fresh adapter on it.
        base_name = base_name or model.base_model
        if not BaseModel.objects.filter(name=base_name).exists():
            errors["baseModel"] = [f"no registered base model '{base_name}'" if base_name else "name a base model"]
    elif base_name:
        base_version = model.versions.filter(version=base_name).first()
        if base_version is None:
            errors["baseModel"] = [f"model '{model.name}' has no version '{base_name}'"]
        elif base_version.status in (VersionStatus.TRAINING, VersionStatus.FAILED):
            errors["baseModel"] = [f"version '{base_name}' is {base_version.status}; it has no weights to start from"]
    else:
        base_version = selectors.active_version_of(model)

    hyper = fields.get("hyperparameters") or {}
    if not isinstance(hyper, dict):
        errors["hyperparameters"] = ["must be an object"]
    else:
        hyper_errors = family.check(hyper)
        if hyper_errors:
            errors["hyperparameters"] = hyper_errors
    if errors:
        raise InvalidInput("Invalid FineTuningConfig.", fields=errors)

    assert dataset is not None
    config = FineTuningConfig(
        model_name=model.name,
        dataset=dataset.name,
        epochs=epochs,
        learning_rate=fields.get("learningRate", family_defaults.get("learningRate", settings.DEFAULT_LEARNING_RATE)),
        batch_size=batch_size,
        validation_split=fields.get("validationSplit", settings.DEFAULT_VALIDATION_SPLIT),
        early_stopping_patience=patience,
        training_data_size=size if size is not None else (0 if family is LLM_LORA else window_bars),
        base_model=base_name if family is LLM_LORA else (base_version.version if base_version else None),
        activation_policy=policy,
        hyperparameters={**family.defaults(), **hyper},
        start_date=timeframes.format_key(start) if start else None,
        end_date=timeframes.format_key(end) if end else None,
        evaluation=evaluation,
        walk_forward_folds=fields.get("walkForwardFolds", DEFAULT_WALK_FORWARD_FOLDS),
        device=device,
        distributed=distributed.to_wire() if distributed is not None else None,
    )
    return ResolvedTraining(config=config, dataset=dataset, base_version=base_version)
