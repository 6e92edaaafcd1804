"""The fine-tuning configuration as the engine receives it: a plain dataclass, no Django."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FineTuningConfig:
    model_name: str
    dataset: str
    epochs: int
    learning_rate: float
    batch_size: int
    validation_split: float
    early_stopping_patience: int
    training_data_size: int
    base_model: str | None = None
    activation_policy: str = "manual"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    # ISO date (a whole UTC day) or, for intraday bars, ISO timestamp; both ends inclusive.
    start_date: str | None = None  # first bar used; None = the dataset's first
    end_date: str | None = None  # last bar used; None = the dataset's last
    # "validation": scored on the last validationSplit window only; "walk_forward": also k purged
    # chronological folds before that window (see walk_forward.py).
    evaluation: str = "validation"
    walk_forward_folds: int = 4
    # Where the claiming worker trains: "auto" (CUDA when it has a GPU), "cpu" or "cuda"; and, when
    # set, the torchrun group it launches instead of training in its own process, in its wire form
    # ({"nprocPerNode", "nnodes", "rdzvEndpoint"}: placement.DistributedSettings.from_wire reads
    # it; held as given because distributed.py's launcher imports this module).
    device: str = "auto"
    distributed: dict[str, Any] | None = None

    _WIRE = {
        "model_name": "modelName",
        "dataset": "dataset",
        "epochs": "epochs",
        "learning_rate": "learningRate",
        "batch_size": "batchSize",
        "validation_split": "validationSplit",
        "early_stopping_patience": "earlyStoppingPatience",
        "training_data_size": "trainingDataSize",
        "base_model": "baseModel",
        "activation_policy": "activationPolicy",
        "hyperparameters": "hyperparameters",
        "start_date": "startDate",
        "end_date": "endDate",
        "evaluation": "evaluation",
        "walk_forward_folds": "walkForwardFolds",
        "device": "device",
        "distributed": "distributed",
    }

    def to_wire(self) -> dict[str, Any]:
        """The seed's camelCase form, as stored on the job and shown by the API."""
        return {self._WIRE[k]: v for k, v in asdict(self).items()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> FineTuningConfig:
        """A stored config; one stored before a field existed gets that field's default."""
        return cls(**{k: data[w] for k, w in cls._WIRE.items() if w in data})
