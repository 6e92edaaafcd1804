"""Score an existing version on another run's validation window.

`activationPolicy=if_better` must compare the new version with the active one on the same
bars, not on whatever window the active version was validated on when it was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .evaluation import task_metrics
from .spec import TrainingSpec

if TYPE_CHECKING:
    import pandas as pd  # heavy: loaded on first use, not when the module is imported


def score_artifact_on_window(artifact_dir: str | Path, spec: TrainingSpec, data: pd.DataFrame) -> dict[str, float]:
    """The version's task accuracies on the validation window that `spec` cuts from `data`."""
    import torch  # heavy: only the training worker loads torch

    from .artifact import load_model  # heavy: artifact pulls torch and onnx

    split = spec.split(data)
    net, normalization = load_model(artifact_dir)
    with torch.no_grad():
        features = torch.from_numpy(normalization.apply(split.x_val)).float()
        probabilities = torch.sigmoid(net(features)).numpy()
    return task_metrics(probabilities, split.y_val)
