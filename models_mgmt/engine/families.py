"""Trainer families and the hyperparameters each accepts.

A family is what trains a model; the API validates `hyperparameters` against the family's spec
before a job is created, so a typo never reaches a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, bool or list (of positive ints, or of `choices` when given)
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> str | None:
        """Return why `value` is unacceptable, or None."""
        if self.kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind is list and self.choices:
            if not isinstance(value, list) or not value or len(set(value)) != len(value):
                return f"must be a non-empty list without repeats of: {', '.join(self.choices)}"
            wrong = [v for v in value if v not in self.choices]
            return (
                f"not allowed: {', '.join(map(str, wrong))}; choose from: {', '.join(self.choices)}" if wrong else None
            )
        if self.kind is list:
            if not isinstance(value, list) or not 1 <= len(value) <= 8:
                return "must be a list of 1 to 8 layer sizes"
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return "every layer size must be an integer"
            return self._bounds_all(value)
        if self.kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            return "must be an integer"
        if self.kind is float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            return "must be a number"
        return self._bounds_all([value])

    def _bounds_all(self, values: list[Any]) -> str | None:
        for v in values:
            if self.minimum is not None and v < self.minimum:
                return f"must be at least {self.minimum:g}"
            if self.maximum is not None and v > self.maximum:
                return f"must be at most {self.maximum:g}"
        return None


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    params: dict[str, Param] = field(default_factory=dict)
    # FineTuningConfig defaults (wire names) that differ from the server-wide DEFAULT_* settings.
    config_defaults: dict[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {key: p.default for key, p in self.params.items()}

    def check(self, hyperparameters: dict[str, Any]) -> dict[str, str]:
        """Per-key errors; unknown keys are rejected with the list of allowed ones."""
        errors: dict[str, str] = {}
        allowed = ", ".join(sorted(self.params))
        for key, value in hyperparameters.items():
            param = self.params.get(key)
            if param is None:
                errors[key] = f"unknown hyperparameter for family '{self.name}'; allowed: {allowed}"
                continue
            problem = param.check(value)
            if problem:
                errors[key] = problem
        return errors


MULTITASK_MLP = Family(
    name="multitask-mlp",
    description=(
        "Multi-task network (shared trunk, three heads) predicting signal direction, high-risk "
        "regime and breakout pattern from technical features of daily bars."
    ),
    params={
        "hiddenSizes": Param(list, [64, 32], 1, 4096, "sizes of the shared trunk's layers"),
        "dropout": Param(float, 0.1, 0.0, 0.9, "dropout between trunk layers"),
        "weightDecay": Param(float, 1e-4, 0.0, 1.0, "AdamW weight decay"),
        "horizon": Param(int, 5, 1, 60, "bars ahead that the labels look"),
        "breakoutWindow": Param(int, 20, 5, 250, "trailing bars of the breakout range"),
        "seed": Param(int, 42, 0, 2**31 - 1, "random seed; same seed, same result"),
        "freezeTrunk": Param(bool, False, help="train only the heads when fine-tuning"),
        "feePerTrade": Param(float, 0.0005, 0.0, 0.1, "backtest cost per position change, as a fraction"),
    },
)

# Projections of a decoder block that LoRA may adapt. Embeddings and the output head are never
# adapted: Ollama's adapter import and llama.cpp expect attention/MLP LoRA only.
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

LLM_LORA = Family(
    name="llm-lora",
    description=(
        "LoRA fine-tuning of a registered local language model (Hugging Face format, e.g. the "
        "weights behind the Ollama tag llama3.1:8b) on instruction data built from bars: the prompt "
        "renders the causal indicators of bar t, the answer gives the three task labels."
    ),
    params={
        "loraRank": Param(int, 8, 1, 256, "rank r of each LoRA update"),
        "loraAlpha": Param(int, 16, 1, 4096, "LoRA scaling numerator (scale = alpha / r)"),
        "loraDropout": Param(float, 0.05, 0.0, 0.9, "dropout on the LoRA input"),
        "targetModules": Param(
            list,
            ["q_proj", "k_proj", "v_proj", "o_proj"],
            help="projections adapted by LoRA (attention and MLP only)",
            choices=LORA_TARGET_MODULES,
        ),
        "maxSequenceLength": Param(int, 512, 64, 8192, "tokens of prompt + answer; a longer example is refused"),
        "gradientAccumulation": Param(int, 1, 1, 256, "micro-batches (of batchSize) per optimiser step"),
        "weightDecay": Param(float, 0.0, 0.0, 1.0, "AdamW weight decay"),
        "load4bit": Param(bool, False, help="load the base in 4-bit (NF4); only on a CUDA worker with bitsandbytes"),
        "checkpointSteps": Param(int, 50, 1, 100000, "optimiser steps between mid-epoch checkpoints"),
        "horizon": Param(int, 5, 1, 60, "bars ahead that the labels look"),
        "breakoutWindow": Param(int, 20, 5, 250, "trailing bars of the breakout range"),
        "seed": Param(int, 42, 0, 2**31 - 1, "random seed; same seed, same result"),
        "feePerTrade": Param(float, 0.0005, 0.0, 0.1, "backtest cost per position change, as a fraction"),
    },
    config_defaults={"epochs": 3, "learningRate": 2e-4, "batchSize": 8},
)

FAMILIES: dict[str, Family] = {MULTITASK_MLP.name: MULTITASK_MLP, LLM_LORA.name: LLM_LORA}
