"""What a training run uses: wall, CPU and GPU seconds, peak memory, and the work it did.

A `Meter` is started when a worker claims a job and sampled with every heartbeat, so a job killed
mid-way still has the figures of its last heartbeat. Every source is injectable: a test gives a fake
clock and fake process times and gets exact figures.

* **Wall seconds** -- `time.monotonic`, so a clock change does not bend them.
* **CPU seconds** -- user + system time of this process (all its threads) and of its children that
  have ended and been waited for (`resource.getrusage` RUSAGE_SELF + RUSAGE_CHILDREN), counted from
  the meter's start. A worker runs one job at a time, so the process's time is the job's. Not
  clamped: the kernel's accounting cannot exceed wall x the CPUs the process may run on, and a test
  checks that on a real run.
* **Peak RSS** -- the process's high-water mark (`ru_maxrss`). A django-q2 worker runs many jobs in
  one process, so on Linux the mark is reset when the meter starts (`/proc/self/clear_refs`, "5");
  where that is not possible the figure is the process's peak so far, which may be an earlier job's.
* **GPU seconds** -- wall seconds during which this process held tensors on a GPU (CUDA initialised
  and memory allocated), counted between samples: an interval counts when the GPU is in use at its
  end, so the figure is as fine as the heartbeat (0.4 s); plus wall x n for the n GPUs that child
  processes (torchrun's ranks) hold, told by `set_external_gpus(n)` as they start and end, counted
  exactly from each change. Untested on GPU hardware so far.
* **Units** -- the work done: samples x epochs, or tokens for language models; the worker sets
  them when the run's result says how many.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

SAMPLES = "samples"
TOKENS = "tokens"


@dataclass(frozen=True)
class CostSample:
    """What a run used so far (a job's totals: earlier attempts of a resumed job included)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0
    peak_rss_bytes: int = 0
    units: int = 0
    unit_kind: str = SAMPLES


@dataclass(frozen=True)
class ProcessTimes:
    cpu_s: float
    peak_rss_bytes: int


def _maxrss_bytes(usage: resource.struct_rusage) -> int:
    # Linux reports kibibytes, macOS bytes.
    return int(usage.ru_maxrss) if sys.platform == "darwin" else int(usage.ru_maxrss) * 1024


def process_times() -> ProcessTimes:
    """CPU seconds of this process and its waited-for children; the larger peak RSS of the two."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return ProcessTimes(cpu_s=cpu, peak_rss_bytes=max(_maxrss_bytes(own), _maxrss_bytes(children)))


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux 4.0+); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cuda_in_use() -> bool:
    """Whether this process holds tensors on a GPU now. Never imports torch (a run that did not load
    it used no GPU), and does not count a CUDA context alone: a worker that once trained on the GPU
    keeps its context for the CPU-only jobs after it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        if not torch.cuda.is_initialized():
            return False
        return any(torch.cuda.memory_allocated(device) > 0 for device in range(torch.cuda.device_count()))
    except Exception:  # a broken or partial torch import: no GPU to count
        return False


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), the bound on CPU seconds per wall second."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Meter:
    """Samples a run's usage since `start()`, added to what earlier attempts used (`carried`)."""

    def __init__(
        self,
        *,
        carried: CostSample | None = None,
        clock: Callable[[], float] = time.monotonic,
        times: Callable[[], ProcessTimes] = process_times,
        gpu_in_use: Callable[[], bool] = cuda_in_use,
        reset_peak: Callable[[], bool] = reset_peak_rss,
    ) -> None:
        self.carried = carried or CostSample()
        self.units = self.carried.units
        self.unit_kind = self.carried.unit_kind
        self._clock, self._times, self._gpu_in_use, self._reset_peak = clock, times, gpu_in_use, reset_peak
        self._started: float | None = None
        self._cpu_at_start = 0.0
        self._last_sampled = 0.0
        self._gpu_s = 0.0
        self._external_gpus = 0  # GPUs held by child processes (torchrun's ranks)
        self._lock = threading.Lock()  # the heartbeat thread and the worker both sample

    def start(self) -> None:
        self._reset_peak()
        self._started = self._last_sampled = self._clock()
        self._cpu_at_start = self._times().cpu_s

    def set_units(self, units: int, kind: str = SAMPLES) -> None:
        """The job's work so far from a run's result, which counts resumed epochs too."""
        self.units, self.unit_kind = max(int(units), self.carried.units), kind

    def add_units(self, units: int, kind: str = SAMPLES) -> None:
        """More work done (a walk-forward fold)."""
        self.units, self.unit_kind = self.units + max(int(units), 0), kind

    def set_external_gpus(self, n: int) -> None:
        """GPUs that child processes (a torchrun group's ranks on this host) hold from now on; 0 when
        they end. The interval up to now is counted at the previous number first."""
        with self._lock:
            if self._started is not None:
                self._count_gpu_until(self._clock())
            self._external_gpus = max(int(n), 0)

    def _count_gpu_until(self, now: float) -> None:
        elapsed = max(now - self._last_sampled, 0.0)
        own = 1 if self._gpu_in_use() else 0
        self._gpu_s += elapsed * (own + self._external_gpus)
        self._last_sampled = now

    def sample(self) -> CostSample:
        if self._started is None:
            return replace(self.carried, units=self.units, unit_kind=self.unit_kind)
        with self._lock:
            now = self._clock()
            times = self._times()
            self._count_gpu_until(now)
            gpu_s = self._gpu_s
        return CostSample(
            wall_s=self.carried.wall_s + max(now - self._started, 0.0),
            cpu_s=self.carried.cpu_s + max(times.cpu_s - self._cpu_at_start, 0.0),
            gpu_s=self.carried.gpu_s + gpu_s,
            peak_rss_bytes=max(self.carried.peak_rss_bytes, times.peak_rss_bytes),
            units=self.units,
            unit_kind=self.unit_kind,
        )


def work_units(result: object) -> tuple[int, str]:
    """(units, kind) of a training result: tokens seen by a language model, else samples x epochs."""
    tokens = getattr(result, "tokens_seen", None)
    if tokens:
        return int(tokens), TOKENS
    return int(getattr(result, "train_samples", 0)) * int(getattr(result, "epochs_run", 0)), SAMPLES
