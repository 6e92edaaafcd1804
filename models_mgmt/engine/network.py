"""The multi-task network: one shared MLP trunk, three binary heads (signal, risk, pattern).

Sharing the trunk lets the three related questions about the next H bars share what they learn
from the same features; `freezeTrunk` fine-tunes only the heads, which is the cheap and safe way
to adapt a base model to a little new data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .labels import TASKS


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the network before loading its weights (stored as JSON)."""

    input_size: int
    hidden_sizes: tuple[int, ...]
    dropout: float
    tasks: tuple[str, ...] = TASKS
    family: str = "multitask-mlp"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden_sizes"], data["tasks"] = list(self.hidden_sizes), list(self.tasks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        return cls(
            input_size=int(data["input_size"]),
            hidden_sizes=tuple(int(h) for h in data["hidden_sizes"]),
            dropout=float(data["dropout"]),
            tasks=tuple(data.get("tasks", TASKS)),
            family=str(data.get("family", "multitask-mlp")),
        )


class MultiTaskNet(nn.Module):
    """Returns one logit per task, shape (batch, len(tasks)), in the order of `tasks`."""

    def __init__(self, architecture: Architecture):
        super().__init__()
        self.architecture = architecture
        layers: list[nn.Module] = []
        width = architecture.input_size
        for size in architecture.hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(architecture.dropout)]
            width = size
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({task: nn.Linear(width, 1) for task in architecture.tasks})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.trunk(x)
        return torch.cat([self.heads[task](shared) for task in self.architecture.tasks], dim=1)


class ServingModel(nn.Module):
    """Raw features in, probabilities out: the normalisation and sigmoid baked in for export."""

    def __init__(self, net: MultiTaskNet, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net((features - self.mean) / self.std))
