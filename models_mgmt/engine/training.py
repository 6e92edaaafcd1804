"""The one entry point a training worker calls: `run_training`.

Public API::

    from models_mgmt.engine.spec import TrainingSpec
    from models_mgmt.engine.training import run_training, TrainingResult
    from models_mgmt.engine.reporting import ProgressReport, EpochReport

    spec = TrainingSpec.from_config(config)            # FineTuningConfig + family hyperparameters
    result = run_training(
        spec,
        data=bars,                                      # DataFrame: date index; open, high, low, close, volume
        work_dir="/var/lib/techanal/jobs/42",           # checkpoint.pt and artifact/ go here
        init_weights=None,                              # base version: artifact dir, .safetensors or state dict
        resume_from=None,                               # a checkpoint.pt (or a work_dir holding one)
        on_progress=lambda report: ...,                 # ProgressReport, at most every 0.5 s
        on_epoch=lambda report: ...,                    # EpochReport, after every epoch
        on_phase=lambda phase: ...,                     # "building_features", "training", "evaluating", ...
        should_stop=event,                              # threading.Event or () -> bool; checked every batch
    )

With `spec.evaluation == "walk_forward"` the recipe is also scored on k purged chronological folds
before the validation window (`result.walk_forward`, see walk_forward.py); a stop during the folds
makes the run "stopped".

`result.status` is "succeeded" (an artifact was written: `artifact_dir`, `checksum`,
`response_time_ms`) or "stopped" (no artifact; `checkpoint_path` can resume the run). The weights
kept are those of the best trained epoch (`best_epoch` >= 1, its measured `best_val_loss` and
`best_train_loss`), never the starting weights; `start_val_loss` is the starting weights' loss on
the same validation window, `improved_on_start` says whether training beat it, and
`weights_changed` is False when training left every weight exactly as it started. Scores are
plain dicts with the wire's camelCase keys (`metrics`, `baselines`, `backtest`, see
`evaluation.py`); `accuracy` is `metrics["overallScore"]`. Bad data or settings raise ValueError.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import CHECKPOINT_NAME
from .evaluation import backtest, majority_baselines, task_metrics
from .reporting import EpochReport, ProgressReport
from .spec import TrainingSpec

if TYPE_CHECKING:
    import pandas as pd  # heavy: loaded on first use, not when the module is imported
    import torch  # heavy: only the training worker loads torch

ARTIFACT_DIR = "artifact"
# The phases a run goes through, in order (the worker adds its own before and after).
PHASES = ("building_features", "training", "evaluating", "backtesting", "exporting")


@dataclass(frozen=True)
class TrainingResult:
    status: str  # "succeeded" | "stopped"
    epochs_run: int
    best_epoch: int  # the trained epoch whose weights were kept (0 only if stopped in epoch 1)
    final_val_loss: float
    best_val_loss: float  # measured at best_epoch
    final_train_loss: float | None
    start_val_loss: float | None  # the starting weights on the same validation window
    best_train_loss: float | None  # measured at best_epoch
    improved_on_start: bool  # best_val_loss < start_val_loss
    weights_changed: bool  # False: the kept weights equal the starting weights exactly
    metrics: dict[str, float]  # patternRecognition, signalAccuracy, riskAssessment, overallScore
    baselines: dict[str, float]  # the same keys, for the training window's majority class
    backtest: dict[str, float | int]  # see evaluation.backtest
    training_duration_s: float
    train_samples: int
    validation_samples: int
    embargo_samples: int
    train_window: tuple[str, str]  # ISO dates of the first and last training sample
    validation_window: tuple[str, str]
    steps_run: int
    hyperparameters: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    artifact_dir: str | None = None
    checksum: str | None = None
    response_time_ms: float | None = None  # onnxruntime, one sample, median (see artifact.py)
    checkpoint_path: str | None = None
    walk_forward: dict[str, Any] | None = None  # spec.evaluation == "walk_forward": see walk_forward.py

    @property
    def accuracy(self) -> float:
        """The product's single accuracy figure is defined as `overallScore`."""
        return self.metrics["overallScore"]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy}


def fit_summary(outcome: Any, *, weights_changed: bool) -> dict[str, Any]:
    """The TrainingResult fields every family's fit outcome gives the same way (status, epochs, the
    losses measured at the kept epoch and at the start, whether training beat its start)."""
    return {
        "status": outcome.status,
        "epochs_run": outcome.epochs_run,
        "best_epoch": outcome.best_epoch,
        "final_val_loss": outcome.final_val_loss,
        "best_val_loss": outcome.best_val_loss,
        "final_train_loss": outcome.final_train_loss,
        "start_val_loss": outcome.start_val_loss,
        "best_train_loss": outcome.best_train_loss,
        "improved_on_start": bool(
            outcome.start_val_loss is not None
            and outcome.best_epoch > 0
            and outcome.best_val_loss < outcome.start_val_loss
        ),
        "weights_changed": weights_changed,
    }


def initial_weights(source: str | Path | Mapping[str, torch.Tensor] | None) -> Mapping[str, torch.Tensor] | None:
    if source is None or isinstance(source, Mapping):
        return source
    from .artifact import load_weights  # heavy: artifact pulls torch and onnx

    return load_weights(source)


def run_training(
    spec: TrainingSpec,
    *,
    data: pd.DataFrame,
    work_dir: str | Path,
    init_weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    resume_from: str | Path | None = None,
    on_progress: Callable[[ProgressReport], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | Any | None = None,
    clock: Callable[[], float] = time.monotonic,
    device: str = "cpu",
) -> TrainingResult:
    """Split, train, evaluate on the validation window and, unless stopped, write the artifact.

    `device` ("cpu", "cuda", "cuda:1"; see placement.resolve_device) is where the network trains;
    evaluation, the backtest and the export read the kept weights on the CPU."""
    from .trainer import fit  # heavy: the trainer pulls torch

    def phase(name: str) -> None:
        if on_phase is not None:
            on_phase(name)

    started = time.perf_counter()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    phase("building_features")
    split = spec.split(data)
    if resume_from is not None and Path(resume_from).is_dir():
        resume_from = Path(resume_from) / CHECKPOINT_NAME
    starting = initial_weights(init_weights)
    phase("training")
    outcome = fit(
        spec,
        split,
        checkpoint_path=work / CHECKPOINT_NAME,
        init_weights=starting,
        resume_from=resume_from,
        on_progress=on_progress,
        on_epoch=on_epoch,
        should_stop=should_stop,
        clock=clock,
        device=device,
    )

    return conclude_training(
        spec,
        data=data,
        split=split,
        outcome=outcome,
        starting=starting,
        work=work,
        on_phase=on_phase,
        should_stop=should_stop,
        started=started,
    )


def conclude_training(
    spec: TrainingSpec,
    *,
    data: pd.DataFrame,
    split: Any,
    outcome: Any,
    starting: Mapping[str, torch.Tensor] | None,
    work: Path,
    on_phase: Callable[[str], None] | None,
    should_stop: Callable[[], bool] | Any | None,
    started: float,
) -> TrainingResult:
    """What follows `fit` (on the CPU, in one process: a distributed run's rank 0): evaluate on the
    validation window, walk-forward folds if asked, backtest and, unless stopped, export the artifact."""
    import torch  # heavy: only the training worker loads torch

    from .artifact import write_artifact  # heavy: artifact pulls torch and onnx

    def phase(name: str) -> None:
        if on_phase is not None:
            on_phase(name)

    phase("evaluating")
    with torch.no_grad():
        x_val = torch.from_numpy(split.normalization.apply(split.x_val))
        probabilities = torch.sigmoid(outcome.model(x_val)).numpy()
    metrics = task_metrics(probabilities, split.y_val)
    baselines = majority_baselines(split.y_train, split.y_val)
    folds = None
    if spec.evaluation == "walk_forward" and outcome.status == "succeeded":
        from .walk_forward import walk_forward  # heavy: trains one network per fold

        folds = walk_forward(spec, data, should_stop=should_stop)
        if folds is None:  # stopped during a fold: the kept run's checkpoint resumes, the folds run again
            outcome.status = "stopped"
    phase("backtesting")
    trades = backtest(
        probabilities[:, 0], split.val_next_return, fee=spec.fee_per_trade, periods_per_year=spec.bars_per_year
    )
    kept = outcome.model.state_dict()
    weights_changed = starting is None or any(
        name not in starting or not torch.equal(tensor, starting[name]) for name, tensor in kept.items()
    )

    summary: dict[str, Any] = {
        **fit_summary(outcome, weights_changed=weights_changed),
        "metrics": metrics,
        "baselines": baselines,
        "backtest": trades,
        "train_samples": len(split.x_train),
        "validation_samples": len(split.x_val),
        "embargo_samples": split.embargo_samples,
        "train_window": split.train_window,
        "validation_window": split.validation_window,
        "steps_run": outcome.steps_run,
        "hyperparameters": spec.hyperparameters(),
        "history": outcome.history,
        "checkpoint_path": outcome.checkpoint_path,
        "walk_forward": folds,
    }
    artifact = None
    if outcome.status == "succeeded" and weights_changed:
        phase("exporting")
        artifact = write_artifact(
            work / ARTIFACT_DIR,
            model=outcome.model,
            normalization=split.normalization,
            train_features=split.x_train,
            training={"spec": asdict(spec), **summary},
        )
    return TrainingResult(
        **summary,
        training_duration_s=round(time.perf_counter() - started, 3),
        artifact_dir=artifact.path if artifact else None,
        checksum=artifact.checksum if artifact else None,
        response_time_ms=artifact.response_time_ms if artifact else None,
    )
