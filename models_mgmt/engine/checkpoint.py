"""Per-epoch checkpoints, written atomically so a crash never leaves a half-written file.

A checkpoint holds everything that decides the rest of the run -- weights, optimiser moments,
the torch RNG (dropout) and the shuffling generator's state, and the early-stopping bookkeeping --
so resuming from it gives the same result as never having stopped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `state` to a temporary file beside `path`, then rename it over `path`."""
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint; `weights_only` refuses pickled code, so a tampered file cannot run any."""
    import torch

    return torch.load(Path(path), map_location="cpu", weights_only=True)
