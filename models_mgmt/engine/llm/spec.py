"""The `llm-lora` training specification: a FineTuningConfig merged with the family's
hyperparameters and the registered base model it starts from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config import FineTuningConfig
from ..families import LLM_LORA

# Family hyperparameter (wire name) -> LoraSpec attribute.
HYPERPARAMETER_FIELDS = {
    "loraRank": "lora_rank",
    "loraAlpha": "lora_alpha",
    "loraDropout": "lora_dropout",
    "targetModules": "target_modules",
    "maxSequenceLength": "max_sequence_length",
    "gradientAccumulation": "gradient_accumulation",
    "weightDecay": "weight_decay",
    "load4bit": "load_4bit",
    "checkpointSteps": "checkpoint_steps",
    "horizon": "horizon",
    "breakoutWindow": "breakout_window",
    "seed": "seed",
    "feePerTrade": "fee_per_trade",
}
assert set(HYPERPARAMETER_FIELDS) == set(LLM_LORA.params)


@dataclass(frozen=True)
class BaseModelRef:
    """A registered base model as the worker hands it to the engine."""

    name: str
    path: str
    ollama_tag: str
    files: dict[str, str]  # relative name -> sha256, recorded at registration


@dataclass(frozen=True)
class LoraSpec:
    base: BaseModelRef
    epochs: int = 3
    learning_rate: float = 2e-4
    batch_size: int = 8
    validation_split: float = 0.2
    early_stopping_patience: int = 2  # on validation loss; 0 turns it off
    training_examples: int | None = None  # most recent N training examples; None = all
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_sequence_length: int = 512
    gradient_accumulation: int = 1
    weight_decay: float = 0.0
    load_4bit: bool = False
    checkpoint_steps: int = 50
    horizon: int = 5
    breakout_window: int = 20
    seed: int = 42
    fee_per_trade: float = 0.0005
    bars_per_year: int = 252  # the dataset's timeframe: annualises the backtest's Sharpe ratio
    num_threads: int | None = None  # CPU threads; None leaves torch's choice

    @classmethod
    def from_config(
        cls, config: FineTuningConfig, base: BaseModelRef, *, bars_per_year: int = 252, num_threads: int | None = None
    ) -> LoraSpec:
        errors = LLM_LORA.check(config.hyperparameters)
        if errors:
            raise ValueError(f"invalid hyperparameters: {errors}")
        merged = {**LLM_LORA.defaults(), **config.hyperparameters}
        extra = {HYPERPARAMETER_FIELDS[key]: value for key, value in merged.items()}
        extra["target_modules"] = tuple(extra["target_modules"])
        return cls(
            base=base,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            validation_split=config.validation_split,
            early_stopping_patience=config.early_stopping_patience,
            training_examples=config.training_data_size or None,
            bars_per_year=bars_per_year,
            num_threads=num_threads,
            **extra,
        )

    def hyperparameters(self) -> dict[str, Any]:
        """The family hyperparameters back in wire form, for version metadata."""
        values = asdict(self)
        wire = {key: values[attr] for key, attr in HYPERPARAMETER_FIELDS.items()}
        wire["targetModules"] = list(self.target_modules)
        return wire

    def decisive(self) -> dict[str, Any]:
        """What a checkpoint may only be resumed with (epochs and patience may change in between)."""
        free = {
            "epochs",
            "early_stopping_patience",
            "fee_per_trade",
            "bars_per_year",
            "num_threads",
            "checkpoint_steps",
        }
        return {k: v for k, v in asdict(self).items() if k not in free}
