"""Pay a training process's one-time costs before its first job, not during it.

The first `torch.onnx.export` in a process spends seconds initialising with the GIL held (measured:
2.6-5.3 s on a loaded 2-core machine, 0.03 s for every later export), and importing torch, pandas
and onnxruntime takes seconds more. During a job those stretches silence the progress thread (the
feed went quiet for 4.7-7.3 s after the last epoch, and sat at 0 % for ~23 s on a fresh worker).
`warm_up` does all of it once, when a training worker process starts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

# Heavy on purpose: only a training worker imports this module (apps.py, when the worker starts).
import pandas
import torch

from .artifact import export_onnx, measure_response_time_ms
from .dataset import Normalization
from .features import FEATURE_NAMES
from .network import Architecture, MultiTaskNet


def warm_up() -> None:
    """Import the training stack and run one tiny ONNX export and inference."""
    pandas.DataFrame()  # imported, and its lazy parts touched, before the first job
    size = len(FEATURE_NAMES)
    torch.manual_seed(0)
    model = MultiTaskNet(Architecture(size, (4,), 0.0)).eval()
    normalization = Normalization(FEATURE_NAMES, (0.0,) * size, (1.0,) * size)
    with tempfile.TemporaryDirectory(prefix="techanal-warmup-") as folder:
        path = Path(folder) / "warmup.onnx"
        export_onnx(model, normalization, path)
        measure_response_time_ms(path, size)
