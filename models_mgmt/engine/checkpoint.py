"""Per-epoch checkpoints, written atomically so a crash never leaves a half-written file.

A checkpoint holds everything that decides the rest of the run -- weights, optimiser moments,
the torch RNG (dropout) and the shuffling generator's state, and the early-stopping bookkeeping --
so resuming from it gives the same result as never having stopped.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `state` to a temporary file beside `path`, then rename it over `path`."""
    import torch  # heavy: only the training worker loads torch

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
    import torch  # heavy: only the training worker loads torch

    return torch.load(Path(path), map_location="cpu", weights_only=True)


class CheckpointWriter:
    """Writes checkpoints on a background thread so the training loop does not wait for the disk.

    The caller hands over a snapshot (tensors already copied) at each epoch boundary; every one is
    written, in order. `submit` waits only if the previous snapshot has not even started writing
    (a disk slower than an epoch). `flush()` returns once the last snapshot is on disk, so a run
    that stops or ends always leaves its final checkpoint behind. A kill -9 loses at most the
    write in flight: the previous epoch's checkpoint is still whole.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._pending: dict[str, Any] | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, state: dict[str, Any]) -> None:
        with self._cond:
            while self._pending is not None:
                self._cond.wait()
            self._raise_pending_error()
            self._pending = state
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            while self._pending is not None or self._busy:
                self._cond.wait()
            self._raise_pending_error()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                state, self._pending, self._busy = self._pending, None, True
                self._cond.notify_all()
            try:
                save_checkpoint(self.path, state)
            except BaseException as exc:  # handed to the training thread at its next call
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
