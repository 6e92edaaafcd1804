"""What a training worker does with a job: claim it, train, and record exactly one outcome.

`training_job_execute` is the one wrapper around a run (netbox's JobRunner.handle): every path ends
the job in a terminal state, or back in `queued` when the worker itself is going away. The state
changes are services (claim, finish, requeue, version registration); this module runs the engine
between them. Crashes that kill the process are handled by `reaper.training_jobs_reap`.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from models_mgmt import selectors
from models_mgmt.artifacts import code_revision, job_work_dir
from models_mgmt.choices import ActivationPolicy, JobStatus, StudyRole, VersionStatus
from models_mgmt.engine import timeframes
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.engine.ddp_main import DDP_DIR
from models_mgmt.engine.distributed import DistributedError, run_distributed
from models_mgmt.engine.families import LLM_LORA
from models_mgmt.engine.metering import work_units
from models_mgmt.engine.placement import DeviceUnavailable, DistributedSettings, device_label, resolve_device
from models_mgmt.engine.spec import TrainingSpec
from models_mgmt.engine.training import ARTIFACT_DIR, TrainingResult, run_training
from models_mgmt.models import ModelVersion, TrainingJob
from models_mgmt.services.studies import study_advance
from models_mgmt.services.training_jobs import (
    training_job_claim,
    training_job_device_record,
    training_job_finish,
    training_job_requeue,
)
from models_mgmt.services.versions import model_version_register

from .llm import llm_train
from .progress import JobProgress
from .search import trial_run

logger = logging.getLogger(__name__)
T = TypeVar("T")


class WorkerShutdown(Exception):
    """The worker process was asked to exit (SIGTERM) while training."""


@dataclass(frozen=True)
class Outcome:
    status: str
    version: str | None = None


def _date(value: str | None) -> dt.date | dt.datetime | None:
    return timeframes.parse_bar_time(value) if value else None


def _score_active_on_window(job: TrainingJob, spec: Any, bars: Any) -> dict[str, Any] | None:
    """The active version's overallScore on this run's validation window (None: no active version)."""
    from models_mgmt.engine.scoring import score_artifact_on_window  # heavy: loads torch

    active = ModelVersion.objects.filter(model=job.model, status=VersionStatus.ACTIVE).first()
    if active is None or not Path(active.artifact_path).is_dir():
        return None
    metrics = score_artifact_on_window(active.artifact_path, spec, bars)
    return {"version": active.version, "performanceMetrics": metrics}


def training_job_execute(*, job_id: int, progress: Any = None) -> Outcome:
    """Run one job to exactly one outcome. Safe to call for any job id: it only runs queued jobs."""
    job = training_job_claim(job_id=job_id)
    if job is None:
        return Outcome("skipped")
    progress = progress or JobProgress(job_id=job_id)
    progress.worker = job.worker
    progress.start()
    try:
        if job.study_role == StudyRole.TRIAL:
            return Outcome(trial_run(job, progress))
        return _run_claimed(job, progress)
    finally:
        progress.close()
        _cost_finish(job_id, progress)
        if job.study_id is not None:
            _advance_study(job.study_id)


def _cost_finish(job_id: int, progress: JobProgress) -> None:
    """The run's last figures; a failure here loses only the time since the last heartbeat."""
    try:
        _with_db_retry(progress.cost_finish, "costing the job")
    except Exception:
        logger.exception("the final cost of job %s was not written; its last heartbeat's stands", job_id)


def _advance_study(study_id: int) -> None:
    """Next trials, or the best trained in full (the reaper retries if this fails)."""
    try:
        _with_db_retry(lambda: study_advance(study_id), "advancing the study")
    except Exception:
        logger.exception("advancing study %s failed; the reaper will", study_id)


def _device_for(job: TrainingJob, config: FineTuningConfig, group: DistributedSettings | None) -> str:
    """The device this worker trains the job on, recorded on the job; DeviceUnavailable when this
    machine cannot honour the config (no GPU for cuda, fewer GPUs or CPUs than the ranks it runs)."""
    device = resolve_device(config.device, ranks=group.nproc_per_node if group is not None else 1)
    label = device_label(device, group)
    _with_db_retry(
        lambda: training_job_device_record(job_id=job.pk, worker=job.worker, device=label), "recording the device"
    )
    return device


def _train(job: TrainingJob, config: FineTuningConfig, progress: JobProgress) -> tuple[Any, Any, TrainingResult]:
    progress.on_phase("loading_data")
    group = DistributedSettings.from_wire(config.distributed) if config.distributed is not None else None
    device = _device_for(job, config, group)  # every family: an llm-lora job records where it trains too
    if job.model.family == LLM_LORA.name:
        return llm_train(job, config, progress)
    spec = TrainingSpec.from_config(
        config, family=job.model.family, bars_per_year=timeframes.timeframe(job.dataset.timeframe).bars_per_year
    )
    init_weights = None
    if job.base_version is not None:
        base_dir = Path(job.base_version.artifact_path)
        if not base_dir.is_dir():
            raise FileNotFoundError(f"the artifact of base version {job.base_version.version} is missing at {base_dir}")
        init_weights = base_dir
    bars = selectors.dataset_bars_frame(
        job.dataset,
        start=_date(config.start_date),
        end=_date(config.end_date),
    )
    checkpoint = job_work_dir(job) / "checkpoint.pt"
    run: dict[str, Any] = {
        "data": bars,
        "work_dir": job_work_dir(job),
        "init_weights": init_weights,
        "resume_from": checkpoint if checkpoint.exists() else None,
        "on_progress": progress.on_progress,
        "on_epoch": progress.on_epoch,
        "on_phase": progress.on_phase,
        "should_stop": progress.should_stop,
        "device": device,
    }
    if group is None:
        return spec, bars, run_training(spec, **run)
    # This process supervises the torchrun group: its progress thread keeps the heartbeat, relays
    # rank 0's reports and passes a stop on; the ranks' GPUs count in the job's GPU seconds.
    meter = progress.meter
    result = run_distributed(
        spec,
        distributed=group,
        max_restarts=settings.DISTRIBUTED_MAX_RESTARTS,
        on_gpus=meter.set_external_gpus if meter is not None else None,
        **run,
    )
    return spec, bars, result


def _outcome_summary(result: TrainingResult) -> dict[str, Any]:
    """What the feed's last events say about the result, beside the new version's number."""
    return {
        "bestEpoch": result.best_epoch,
        "valLoss": result.best_val_loss,
        "startValLoss": result.start_val_loss,
        "improvedOnStart": result.improved_on_start,
    }


def _failure(exc: Exception) -> tuple[str, str]:
    """(errorCode, reason) a user can act on."""
    if isinstance(exc, DeviceUnavailable):
        return "device_unavailable", str(exc)
    if isinstance(exc, DistributedError):
        return "distributed_error", _tail(str(exc))  # the text ends with torchrun's last log lines
    if isinstance(exc, FileNotFoundError):
        return "artifact_missing", str(exc)
    if isinstance(exc, ValueError):
        return "invalid_data", f"the data or config cannot be trained: {exc}"
    return "training_error", f"{type(exc).__name__}: {exc}"[:2000]


def _tail(text: str, limit: int = 2000) -> str:
    """`text` in at most `limit` characters: its head and its end, where the last log lines are."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 4]} … {text[-(limit - limit // 4 - 3) :]}"


def _with_db_retry(action: Any, what: str) -> Any:
    """Run a short database write, waiting out a brief outage (about 30 s) before giving up."""
    delays = (1, 2, 4, 8, 15)
    for attempt, delay in enumerate((*delays, None)):
        try:
            return action()
        except (OperationalError, InterfaceError):
            if delay is None:
                raise
            logger.warning("database unavailable while %s (attempt %s); retrying in %s s", what, attempt + 1, delay)
            close_old_connections()
            time.sleep(delay)
    return None


def _run_claimed(job: TrainingJob, progress: JobProgress) -> Outcome:
    job_id = job.pk
    worker = job.worker
    config = FineTuningConfig.from_wire(job.config)
    try:
        spec, bars, result = _train(job, config, progress)
        if progress.meter is not None:
            progress.meter.set_units(*work_units(result))
    except Exception as exc:
        if not isinstance(exc, ValueError | FileNotFoundError | DeviceUnavailable):
            logger.exception("training job %s failed", job_id)
        progress.close()  # the last progress event goes out before the terminal status
        code, reason = _failure(exc)
        _with_db_retry(
            lambda: training_job_finish(job_id, JobStatus.FAILED, worker, error_code=code, error=reason), "failing"
        )
        return Outcome(JobStatus.FAILED)
    rival = None
    if result.status == "succeeded":
        progress.outcome = _outcome_summary(result)
        progress.on_phase("registering")
        # An llm-lora adapter is judged by its own run only (docs/llm.md): no re-scoring of the active one.
        llm = job.model.family == LLM_LORA.name
        if result.weights_changed and config.activation_policy == ActivationPolicy.IF_BETTER and not llm:
            rival = _score_active_on_window(job, spec, bars)
    progress.close()  # the last progress event goes out before the terminal status
    if progress.taken_over.is_set():
        return Outcome("abandoned")  # the reaper gave the job to another worker
    if result.status == "succeeded" and not result.weights_changed:
        start = job.base_version.version if job.base_version else "the initial"
        reason = (
            f"training left the weights exactly as they started ({start} weights, {result.epochs_run} epoch(s), "
            f"learning rate {config.learning_rate}); no version was registered"
        )
        _with_db_retry(
            lambda: training_job_finish(job_id, JobStatus.FAILED, worker, error_code="no_change", error=reason),
            "failing",
        )
        return Outcome(JobStatus.FAILED)
    if result.status == "stopped":
        if progress.shutdown.is_set() and not progress.stop.is_set():
            reason = "worker shut down; resuming from the last checkpoint"
            _with_db_retry(
                lambda: training_job_requeue(job_id=job_id, reason=reason, attempt_failed=False), "requeueing"
            )
            return Outcome(JobStatus.QUEUED)
        _with_db_retry(lambda: training_job_finish(job_id, JobStatus.STOPPED, worker), "stopping")
        return Outcome(JobStatus.STOPPED)
    try:
        version = _with_db_retry(
            lambda: model_version_register(
                job_id=job_id, result=result, config=config, rival=rival, worker=worker, code_revision=code_revision()
            ),
            "registering the version",
        )
    except Exception as exc:
        logger.exception("registering the version of job %s failed", job_id)
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        _with_db_retry(
            lambda: training_job_finish(
                job_id, JobStatus.FAILED, worker, error_code="registration_error", error=reason
            ),
            "failing",
        )
        return Outcome(JobStatus.FAILED)
    if version is None:
        return Outcome("abandoned")
    # The version holds the artifact; a torchrun group's folder (copies of the bars and inputs, rank
    # 0's events, torchrun's log) served only this run. The checkpoint stays, as in-process.
    for used in (ARTIFACT_DIR, DDP_DIR):
        shutil.rmtree(job_work_dir(job) / used, ignore_errors=True)
    return Outcome(JobStatus.SUCCEEDED, version.version)
