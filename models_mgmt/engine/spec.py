"""The training specification: a `FineTuningConfig` merged with its family's hyperparameters.

The worker builds it with `TrainingSpec.from_config(config)`; the trainer then reads plain
snake_case attributes and never has to know about wire names or defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .config import FineTuningConfig
from .dataset import build_split
from .families import FAMILIES, MULTITASK_MLP

# Family hyperparameter (wire name) -> TrainingSpec attribute.
HYPERPARAMETER_FIELDS = {
    "hiddenSizes": "hidden_sizes",
    "dropout": "dropout",
    "weightDecay": "weight_decay",
    "horizon": "horizon",
    "breakoutWindow": "breakout_window",
    "seed": "seed",
    "freezeTrunk": "freeze_trunk",
    "feePerTrade": "fee_per_trade",
}


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 20
    learning_rate: float = 1e-3
    batch_size: int = 64
    validation_split: float = 0.2
    early_stopping_patience: int = 10  # 0 turns early stopping off
    training_data_size: int | None = None  # most recent N samples; None/0 = all
    hidden_sizes: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    weight_decay: float = 1e-4
    horizon: int = 5
    breakout_window: int = 20
    seed: int = 42
    freeze_trunk: bool = False
    fee_per_trade: float = 0.0005
    # Annualises the backtest's Sharpe ratios: the dataset's timeframe (see timeframes.py).
    bars_per_year: int = 252
    # One thread is the fastest for this small network and keeps concurrent jobs from fighting.
    num_threads: int = 1
    # "validation" or "walk_forward" (k purged folds before the validation window, walk_forward.py)
    evaluation: str = "validation"
    walk_forward_folds: int = 4

    @classmethod
    def from_config(
        cls, config: FineTuningConfig, family: str = MULTITASK_MLP.name, *, bars_per_year: int = 252
    ) -> TrainingSpec:
        """Family defaults, overridden by the config's hyperparameters (validated by the family);
        `bars_per_year` comes from the dataset's timeframe."""
        spec_family = FAMILIES[family]
        errors = spec_family.check(config.hyperparameters)
        if errors:
            raise ValueError(f"invalid hyperparameters: {errors}")
        merged = {**spec_family.defaults(), **config.hyperparameters}
        extra = {HYPERPARAMETER_FIELDS[key]: value for key, value in merged.items()}
        extra["hidden_sizes"] = tuple(int(h) for h in extra["hidden_sizes"])
        return cls(
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            validation_split=config.validation_split,
            early_stopping_patience=config.early_stopping_patience,
            training_data_size=config.training_data_size or None,
            bars_per_year=bars_per_year,
            evaluation=config.evaluation,
            walk_forward_folds=config.walk_forward_folds,
            **extra,
        )

    def split(self, bars: Any) -> Any:
        """The embargoed chronological split of `bars` that this spec trains and validates on."""
        return build_split(
            bars,
            horizon=self.horizon,
            breakout_window=self.breakout_window,
            validation_split=self.validation_split,
            training_data_size=self.training_data_size,
        )

    def hyperparameters(self) -> dict[str, Any]:
        """The family hyperparameters back in wire form, for version metadata."""
        values = asdict(self)
        wire = {key: values[attr] for key, attr in HYPERPARAMETER_FIELDS.items()}
        wire["hiddenSizes"] = list(self.hidden_sizes)
        return wire
