"""What the trainer tells its caller while it runs, and how often.

The worker relays progress to the database and a websocket; the product promises an update at
most every 0.5 s, so the trainer throttles by time, not by step count. The clock is injectable so
tests can prove the rate without sleeping or timing assertions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ProgressReport:
    """A snapshot for a progress bar. `loss` is the mean training loss of the current epoch so far;
    `val_loss` and `metrics` are those of the last finished epoch (None / empty before the first)."""

    epoch: int  # 1-based epoch in progress
    total_epochs: int
    step: int  # 1-based batch within the epoch
    steps_per_epoch: int
    progress: float  # 0-100 over the whole run
    loss: float
    val_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch: what the job's per-epoch metrics table shows."""

    epoch: int
    train_loss: float
    val_loss: float
    metrics: dict[str, float]
    duration_s: float
    best_epoch: int
    improved: bool


class ProgressThrottle:
    """`due()` is true at most once per `interval_s` of the given clock (and on its first call)."""

    def __init__(self, interval_s: float = PROGRESS_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return True
