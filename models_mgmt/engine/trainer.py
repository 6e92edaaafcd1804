"""The training loop: AdamW, shuffled mini-batches, early stopping, checkpoints, stop and progress.

Design choices and why:

* **Deterministic** -- the same seed and data give bit-identical weights: the weights are
  initialised after `torch.manual_seed(seed)`, batches are shuffled by a seeded
  `torch.Generator`, deterministic algorithms and a fixed thread count are enforced, and the
  global RNG (used by dropout) is forked so other code in the process neither disturbs nor is
  disturbed by a run.
* **Best trained epoch** on validation loss. The starting weights are scored first (epoch 0) and
  recorded (`start_val_loss`), but the weights restored at the end are always those of the best
  *trained* epoch: a version is never its parent's weights again under a new number. Whether that
  epoch beat the starting weights is reported (`improved_on_start`), not hidden. Early stopping
  (`early_stopping_patience`, 0 turns it off) counts epochs without a new best trained epoch.
* **Checkpoint after every epoch** (see `checkpoint.py`; written by a background thread, flushed
  before `fit` returns); resuming restores the RNG and generator
  states too, so a resumed run equals an uninterrupted one.
* **Stop requests** are checked before every batch, so at most the batch in flight finishes.
* **Progress** is throttled by time (`ProgressThrottle`); the loss is accumulated as a tensor so
  the loop never waits on `.item()` except when a report is due.
* **One loop, several processes**: a `Parallel` strategy says how the loop is spread. The default
  trains alone in this process (the loop above, unchanged). `DistributedDataParallel` (a torchrun
  rank, see ddp_main.py) wraps the network in torch's DistributedDataParallel, gives each rank its
  shard of the *training* samples (a seeded `DistributedSampler`, reshuffled per epoch) at
  batch_size / world samples so the global batch stays `batch_size`, validates on the whole
  chronological validation window on every rank, and all-reduces the stop decision before every
  batch (every rank stops before the same batch), the early-stopping decision and the epoch loss.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointWriter, load_checkpoint
from .dataset import SampleSplit
from .evaluation import task_metrics
from .network import Architecture, MultiTaskNet
from .placement import world_problem
from .reporting import EpochReport, ProgressReport, ProgressThrottle
from .spec import TrainingSpec

CHECKPOINT_FORMAT = 1
StopCheck = Callable[[], bool]


@dataclass
class FitOutcome:
    status: str  # "succeeded" | "stopped"
    model: MultiTaskNet  # holding the best weights
    epochs_run: int
    best_epoch: int  # the trained epoch whose weights were kept (0 only when no epoch finished)
    best_val_loss: float  # validation loss measured at best_epoch
    final_val_loss: float  # of the last finished epoch
    final_train_loss: float | None
    start_val_loss: float | None  # validation loss of the starting weights (epoch 0)
    best_train_loss: float | None  # training loss of best_epoch
    steps_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_path: str | None = None


@dataclass
class _State:
    """Everything besides weights that decides how the rest of a run goes (checkpointed)."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    steps_run: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    start_loss: float | None = None  # validation loss of the starting weights


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    # On the CPU whatever the device: checkpoints and the kept weights read the same on any machine.
    return {name: tensor.detach().clone().cpu() for name, tensor in model.state_dict().items()}


def data_fingerprint(spec: TrainingSpec, split: SampleSplit) -> str:
    """Identifies what a checkpoint may be resumed with: same samples and same learning setup."""
    digest = hashlib.sha256()
    for array in (split.x_train, split.y_train, split.x_val, split.y_val):
        digest.update(array.tobytes())
    # may change between stop and resume (the evaluation fields do not touch the kept model's run)
    free = {"epochs", "early_stopping_patience", "fee_per_trade", "evaluation", "walk_forward_folds"}
    decisive = {k: v for k, v in asdict(spec).items() if k not in free}
    digest.update(json.dumps(decisive, sort_keys=True, default=list).encode())
    return digest.hexdigest()


def as_stop_check(should_stop: StopCheck | Any | None) -> StopCheck:
    """Accept a callable or anything with `is_set()` (a `threading.Event`)."""
    if should_stop is None:
        return lambda: False
    if hasattr(should_stop, "is_set"):
        return should_stop.is_set
    return should_stop


@contextmanager
def _reproducible(threads: int, device: torch.device) -> Iterator[None]:
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    # On CUDA some kernels (cuBLAS without CUBLAS_WORKSPACE_CONFIG) have no deterministic version:
    # warn there instead of failing the run; the CPU stays strictly deterministic.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


class Parallel:
    """How the loop is spread over processes; this default trains alone, in this process."""

    rank = 0
    world_size = 1

    @property
    def reports(self) -> bool:
        """Whether this process reports progress and epochs and writes the checkpoint."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def batch_size(self, global_batch: int) -> int:
        return global_batch

    def samples(self, n: int) -> int:
        """How many training samples this process sees per epoch."""
        return n

    def epoch_order(self, n: int, generator: torch.Generator, epoch: int) -> torch.Tensor:
        return torch.randperm(n, generator=generator)

    def agree(self, decision: bool) -> bool:
        """A stop decision every process takes together (True if any process took it)."""
        return decision

    def epoch_loss(self, running: torch.Tensor, seen: int) -> float:
        return float(running) / max(seen, 1)


class DistributedDataParallel(Parallel):
    """One rank of a torch.distributed group (initialised by the caller: ddp_main.py)."""

    def __init__(self, device: torch.device, seed: int) -> None:
        import torch.distributed as dist  # heavy: only a torchrun rank needs the distributed package

        self._dist = dist
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device, self.seed = device, seed
        self._sampler: Any = None

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def batch_size(self, global_batch: int) -> int:
        if problem := world_problem(self.world_size, global_batch):
            raise ValueError(problem)
        return global_batch // self.world_size

    def _sampler_for(self, n: int) -> Any:
        from torch.utils.data import DistributedSampler  # heavy: torch's data package, ranks only

        if self._sampler is None:  # one run, one training set
            # range(n) stands for the samples: the sampler reads only its length
            self._sampler = DistributedSampler(
                range(n),  # type: ignore[arg-type]
                num_replicas=self.world_size,
                rank=self.rank,
                shuffle=True,
                seed=self.seed,
            )
        return self._sampler

    def samples(self, n: int) -> int:
        return len(self._sampler_for(n))

    def epoch_order(self, n: int, generator: torch.Generator, epoch: int) -> torch.Tensor:
        sampler = self._sampler_for(n)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    def agree(self, decision: bool) -> bool:
        flag = torch.tensor([1 if decision else 0], device=self.device)
        self._dist.all_reduce(flag, op=self._dist.ReduceOp.MAX)
        return bool(flag.item())

    def epoch_loss(self, running: torch.Tensor, seen: int) -> float:
        totals = torch.stack([running.detach().double(), torch.tensor(float(seen), device=running.device).double()])
        self._dist.all_reduce(totals)
        return float(totals[0]) / max(float(totals[1]), 1.0)


def fit(
    spec: TrainingSpec,
    split: SampleSplit,
    *,
    checkpoint_path: str | Path | None = None,
    init_weights: Mapping[str, torch.Tensor] | None = None,
    resume_from: str | Path | None = None,
    on_progress: Callable[[ProgressReport], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    should_stop: StopCheck | Any | None = None,
    clock: Callable[[], float] = time.monotonic,
    device: str | torch.device = "cpu",
    parallel: Parallel | None = None,
) -> FitOutcome:
    """Train a `MultiTaskNet` on `split`; see the module docstring for the rules it follows.

    The network and the samples live on `device` while training; the returned model is on the CPU
    (evaluation and export read it there)."""
    resume = load_checkpoint(resume_from) if resume_from else None
    writer = CheckpointWriter(checkpoint_path) if checkpoint_path else None
    target = torch.device(device)
    try:
        with _reproducible(spec.num_threads, target):
            return _fit(
                spec,
                split,
                checkpoint_path=Path(checkpoint_path) if checkpoint_path else None,
                writer=writer,
                init_weights=init_weights,
                resume=resume,
                on_progress=on_progress,
                on_epoch=on_epoch,
                stop=as_stop_check(should_stop),
                throttle=ProgressThrottle(clock=clock),
                device=target,
                parallel=parallel or Parallel(),
            )
    finally:
        if writer is not None:
            writer.close()  # the last epoch's checkpoint is on disk before fit returns


def build_model(spec: TrainingSpec, input_size: int) -> MultiTaskNet:
    torch.manual_seed(spec.seed)
    return MultiTaskNet(Architecture(input_size, tuple(spec.hidden_sizes), spec.dropout))


def _load_weights(model: nn.Module, weights: Mapping[str, torch.Tensor], what: str) -> None:
    try:
        model.load_state_dict(dict(weights), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{what} do not fit this architecture: {exc}") from exc


def _fit(
    spec: TrainingSpec,
    split: SampleSplit,
    *,
    checkpoint_path: Path | None,
    writer: CheckpointWriter | None,
    init_weights: Mapping[str, torch.Tensor] | None,
    resume: dict[str, Any] | None,
    on_progress: Callable[[ProgressReport], None] | None,
    on_epoch: Callable[[EpochReport], None] | None,
    stop: StopCheck,
    throttle: ProgressThrottle,
    device: torch.device,
    parallel: Parallel,
) -> FitOutcome:
    norm = split.normalization
    x_train = torch.from_numpy(norm.apply(split.x_train)).to(device)
    y_train = torch.from_numpy(split.y_train).to(device)
    x_val = torch.from_numpy(norm.apply(split.x_val)).to(device)
    y_val = torch.from_numpy(split.y_val).to(device)

    model = build_model(spec, x_train.shape[1])
    if init_weights is not None:
        _load_weights(model, init_weights, "initial weights")
    model.to(device)  # after loading: the initial weights and checkpoints are CPU tensors
    if spec.freeze_trunk:
        for parameter in model.trunk.parameters():
            parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # foreach: one fused update over all tensors, markedly faster than a loop for small layers.
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay, foreach=True)
    generator = torch.Generator().manual_seed(spec.seed)
    loss_fn = nn.BCEWithLogitsLoss()
    fingerprint = data_fingerprint(spec, split)

    def validate() -> tuple[float, dict[str, float]]:
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            loss = float(loss_fn(logits, y_val))
        return loss, task_metrics(torch.sigmoid(logits).cpu().numpy(), split.y_val)

    state = _State()
    if resume is not None:
        if resume.get("fingerprint") != fingerprint:
            raise ValueError("checkpoint was written for other data or settings; it cannot be resumed here")
        _load_weights(model, resume["model"], "checkpoint weights")
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["torch_rng"])
        generator.set_state(resume["generator"])
        state = _State(**resume["state"])
        last_val = state.history[-1]["val_loss"] if state.history else (state.start_loss or state.best_loss)
        last_metrics = state.history[-1]["metrics"] if state.history else {}
    else:
        last_val, last_metrics = validate()
        state.start_loss = last_val
        state.best_weights = _snapshot(model)  # kept only while no epoch has finished (a stop in epoch 1)

    network = parallel.wrap(model)  # trains; `model` (the same weights) validates and is checkpointed
    n = len(x_train)
    batch_size = parallel.batch_size(spec.batch_size)
    steps_per_epoch = math.ceil(parallel.samples(n) / batch_size)
    total_steps = max(1, spec.epochs * steps_per_epoch)
    started, steps_this_call = time.perf_counter(), 0
    status, last_train_loss = "succeeded", state.history[-1]["train_loss"] if state.history else None
    patience = spec.early_stopping_patience

    stopped_early = parallel.agree(patience > 0 and state.bad_epochs >= patience)
    while state.epoch < spec.epochs and not stopped_early:
        epoch = state.epoch + 1
        epoch_started = time.perf_counter()
        model.train()
        if spec.freeze_trunk:
            model.trunk.eval()  # frozen features: no dropout noise on what the heads read
        order = parallel.epoch_order(n, generator, epoch)
        running, seen = torch.zeros((), device=device), 0
        for step in range(steps_per_epoch):
            if parallel.agree(stop()):
                status = "stopped"
                break
            batch = order[step * batch_size : (step + 1) * batch_size].to(device)
            loss = loss_fn(network(x_train[batch]), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach() * len(batch)
            seen += len(batch)
            state.steps_run += 1
            steps_this_call += 1
            if on_progress is not None and throttle.due():
                done = (epoch - 1) * steps_per_epoch + step + 1
                rate = (time.perf_counter() - started) / steps_this_call
                on_progress(
                    ProgressReport(
                        epoch=epoch,
                        total_epochs=spec.epochs,
                        step=step + 1,
                        steps_per_epoch=steps_per_epoch,
                        progress=round(100.0 * done / total_steps, 2),
                        loss=float(running) / seen,
                        val_loss=last_val,
                        metrics=dict(last_metrics),
                        eta_s=round(rate * (total_steps - done), 2),
                    )
                )
        if status == "stopped":
            break

        last_train_loss = parallel.epoch_loss(running, seen)
        last_val, last_metrics = validate()
        improved = last_val < state.best_loss
        if improved:
            state.best_loss, state.best_epoch, state.bad_epochs = last_val, epoch, 0
            state.best_weights = _snapshot(model)
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        report = EpochReport(
            epoch=epoch,
            train_loss=last_train_loss,
            val_loss=last_val,
            metrics=last_metrics,
            duration_s=round(time.perf_counter() - epoch_started, 4),
            best_epoch=state.best_epoch,
            improved=improved,
        )
        state.history.append(asdict(report))
        if writer is not None:
            writer.submit(
                {
                    "format": CHECKPOINT_FORMAT,
                    "fingerprint": fingerprint,
                    "model": _snapshot(model),
                    # deep copies: the optimiser keeps updating its own tensors while the disk works
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                    "torch_rng": torch.get_rng_state(),
                    "generator": generator.get_state(),
                    "state": copy.deepcopy(asdict(state)),
                },
            )
        if on_epoch is not None:
            on_epoch(report)
        stopped_early = parallel.agree(patience > 0 and state.bad_epochs >= patience)

    model.to("cpu")
    model.load_state_dict(state.best_weights)
    model.eval()
    best_row = next((row for row in state.history if row["epoch"] == state.best_epoch), None)
    return FitOutcome(
        status=status,
        model=model,
        epochs_run=state.epoch,
        best_epoch=state.best_epoch,
        best_val_loss=best_row["val_loss"] if best_row else last_val,
        final_val_loss=last_val,
        final_train_loss=last_train_loss,
        start_val_loss=state.start_loss,
        best_train_loss=best_row["train_loss"] if best_row else None,
        steps_run=state.steps_run,
        history=state.history,
        checkpoint_path=str(checkpoint_path) if checkpoint_path is not None and state.epoch > 0 else None,
    )
