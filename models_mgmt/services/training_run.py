"""What a training worker does with a job: claim it, train, and record exactly one outcome.

`training_job_execute` is the one wrapper around a run (netbox's JobRunner.handle): every path ends
the job in a terminal state, or back in `queued` when the worker itself is going away. Crashes that
kill the process are handled by `training_jobs_reap`, which the worker runs at start and on a
schedule: a job whose worker is gone resumes from its last checkpoint, or fails as `worker_lost`
once its attempts are used up.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.utils import timezone

from models_mgmt.choices import ActivationPolicy, JobStatus, VersionStatus
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.models import ModelVersion, TrainingJob

from .audit import audit_record
from .training_jobs import training_job_transition

logger = logging.getLogger(__name__)
VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


class WorkerShutdown(Exception):
    """The worker process was asked to exit (SIGTERM) while training."""


@dataclass(frozen=True)
class Outcome:
    status: str
    version: str | None = None


def job_work_dir(job: TrainingJob) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "jobs" / str(job.uid)


def model_artifacts_dir(model_name: str) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "models" / model_name.replace(":", "_")


def version_dir(model_name: str, version: str) -> Path:
    return model_artifacts_dir(model_name) / version


def next_version_number(model_id: int) -> str:
    """The next minor version: v1.0.0 first, then v1.1.0, v1.2.0, ... above the highest so far."""
    highest = (0, -1, 0)
    for name in ModelVersion.objects.filter(model_id=model_id).values_list("version", flat=True):
        match = VERSION_RE.match(name)
        if match:
            highest = max(highest, tuple(int(g) for g in match.groups()))
    if highest == (0, -1, 0):
        return "v1.0.0"
    return f"v{highest[0]}.{highest[1] + 1}.0"


def code_revision() -> str:
    revision = os.environ.get("CODE_REVISION")
    if revision:
        return revision
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@transaction.atomic
def training_job_claim(*, job_id: int) -> TrainingJob | None:
    """Queued -> running, counting the attempt. None when the job is not queued (stopped, already
    claimed by a duplicate delivery, or finished): a worker never runs a job twice at once."""
    job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.status != JobStatus.QUEUED:
        return None
    now = timezone.now()
    training_job_transition(
        job,
        JobStatus.RUNNING,
        attempts=job.attempts + 1,
        started_at=job.started_at or now,
        heartbeat_at=now,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        error="",
        error_code="",
    )
    return job


def _load_bars(job: TrainingJob) -> Any:
    import pandas as pd

    config = job.config
    bars = job.dataset.bars.order_by("date")
    if config.get("startDate"):
        bars = bars.filter(date__gte=config["startDate"])
    if config.get("endDate"):
        bars = bars.filter(date__lte=config["endDate"])
    rows = list(bars.values_list("date", "open", "high", "low", "close", "volume"))
    frame = pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "volume"]).set_index("date")
    return frame


@transaction.atomic
def _finish_succeeded(
    job_id: int, result: Any, config: FineTuningConfig, rival: dict | None, worker: str
) -> ModelVersion | None:
    """Register the version; None when this worker no longer owns the job (it was reaped)."""
    job = (
        TrainingJob.objects.select_for_update(of=("self",))
        .select_related("model", "base_version", "dataset")
        .get(pk=job_id)
    )
    if job.status not in (JobStatus.RUNNING, JobStatus.STOPPING) or job.worker != worker:
        logger.warning("job %s is no longer %s's to finish (%s, %s)", job_id, worker, job.status, job.worker)
        return None
    model = job.model
    number = next_version_number(model.pk)
    target = version_dir(model.name, number)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # left over from a run that died between the move and the commit
        shutil.rmtree(target)
    shutil.copytree(result.artifact_dir, target)
    version = ModelVersion.objects.create(
        model=model,
        version=number,
        status=VersionStatus.READY,
        parent=job.base_version,
        dataset=job.dataset,
        accuracy=result.accuracy,
        response_time_ms=result.response_time_ms,
        training_data_size=result.train_samples,
        trained_at=timezone.now(),
        performance_metrics=result.metrics,
        baselines=result.baselines,
        backtest=result.backtest,
        metadata={
            "hyperparameters": result.hyperparameters,
            "trainingDuration": result.training_duration_s,
            "epochs": result.epochs_run,
            "bestEpoch": result.best_epoch,
            "loss": result.best_val_loss,
            "trainLoss": result.final_train_loss,
            "validationAccuracy": result.accuracy,
            "trainWindow": list(result.train_window),
            "validationWindow": list(result.validation_window),
            "trainSamples": result.train_samples,
            "validationSamples": result.validation_samples,
            "embargoSamples": result.embargo_samples,
            "lineage": {
                "parentVersion": job.base_version.version if job.base_version else None,
                "dataset": job.dataset.name,
                "jobId": job.pk,
                "seed": result.hyperparameters.get("seed"),
                "codeRevision": code_revision(),
                "config": job.config,
            },
            **({"activeVersionOnWindow": rival} if rival else {}),
        },
        artifact_path=str(target),
        checksum=result.checksum or "",
    )
    from models_mgmt.progress import epoch_rows_save

    epoch_rows_save(job.pk, result.history)  # complete even across a resume after a crash
    training_job_transition(job, JobStatus.SUCCEEDED, version=version, progress=100.0)
    audit_record(
        actor=None, action="version.created", obj=version, ai_model=model, after={"version": number, "job": job.pk}
    )
    if config.activation_policy == ActivationPolicy.IF_BETTER:
        _activate_if_better(job, version, rival)
    return version


def _score_active_on_window(job: TrainingJob, spec: Any, bars: Any) -> dict[str, Any] | None:
    """The active version's overallScore on this run's validation window (None: no active version)."""
    from models_mgmt.engine.scoring import score_artifact_on_window

    active = ModelVersion.objects.filter(model=job.model, status=VersionStatus.ACTIVE).first()
    if active is None or not Path(active.artifact_path).is_dir():
        return None
    metrics = score_artifact_on_window(active.artifact_path, spec, bars)
    return {"version": active.version, "performanceMetrics": metrics}


def _activate_if_better(job: TrainingJob, version: ModelVersion, rival: dict | None) -> None:
    """Activate the new version when its overallScore beats the active one's on the same window."""
    from .versions import model_version_activate_system

    active = ModelVersion.objects.filter(model=job.model, status=VersionStatus.ACTIVE).first()
    if active is not None:
        if rival is None or rival["version"] != active.version:
            return  # no like-for-like comparison possible: leave the choice to a person
        if version.performance_metrics["overallScore"] <= rival["performanceMetrics"]["overallScore"]:
            return
    model_version_activate_system(model=job.model, version=version, reason="activationPolicy=if_better")


def _finish(job_id: int, status: str, worker: str | None = None, **fields: Any) -> None:
    """End a running/stopping job. With `worker`, only if that worker still owns the job."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().select_related("model").get(pk=job_id)
        if job.status not in (JobStatus.RUNNING, JobStatus.STOPPING):
            return  # the reaper or a stop already ended it
        if worker is not None and job.worker != worker:
            logger.warning("job %s was taken over by %s; %s leaves it alone", job_id, job.worker or "?", worker)
            return
        before = job.status
        training_job_transition(job, status, **fields)
        audit_record(
            actor=None,
            action=f"job.{status}",
            obj=job,
            ai_model=job.model,
            before={"status": before},
            after={"status": status, **({"error": fields["error"]} if "error" in fields else {})},
        )


def training_job_requeue(*, job_id: int, reason: str, attempt_failed: bool = True) -> bool:
    """Running -> queued and handed to a worker again; resumes from the last checkpoint.

    A worker that shut down on request did not fail: its attempt is given back.
    """
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().select_related("model").get(pk=job_id)
        if job.status != JobStatus.RUNNING:
            return False
        attempts = job.attempts if attempt_failed else max(job.attempts - 1, 0)
        training_job_transition(job, JobStatus.QUEUED, worker="", error=reason, attempts=attempts, enqueued_at=None)
        audit_record(actor=None, action="job.requeued", obj=job, ai_model=job.model, after={"reason": reason})
        from models_mgmt.tasks import training_job_enqueue

        transaction.on_commit(lambda: training_job_enqueue(job_id))
    return True


def training_job_execute(*, job_id: int, progress: Any = None) -> Outcome:
    """Run one job to exactly one outcome. Safe to call for any job id: it only runs queued jobs."""
    from models_mgmt.progress import JobProgress

    job = training_job_claim(job_id=job_id)
    if job is None:
        return Outcome("skipped")
    progress = progress or JobProgress(job_id=job_id)
    progress.worker = job.worker
    progress.start()
    try:
        return _run_claimed(job, progress)
    finally:
        progress.close()


def _train(job: TrainingJob, config: FineTuningConfig, progress: Any) -> tuple[Any, Any, Any]:
    from models_mgmt.engine.spec import TrainingSpec
    from models_mgmt.engine.training import run_training

    spec = TrainingSpec.from_config(config, family=job.model.family)
    init_weights = None
    if job.base_version is not None:
        base_dir = Path(job.base_version.artifact_path)
        if not base_dir.is_dir():
            raise FileNotFoundError(f"the artifact of base version {job.base_version.version} is missing at {base_dir}")
        init_weights = base_dir
    bars = _load_bars(job)
    checkpoint = job_work_dir(job) / "checkpoint.pt"
    result = run_training(
        spec,
        data=bars,
        work_dir=job_work_dir(job),
        init_weights=init_weights,
        resume_from=checkpoint if checkpoint.exists() else None,
        on_progress=progress.on_progress,
        on_epoch=progress.on_epoch,
        should_stop=progress.should_stop,
    )
    return spec, bars, result


def _failure(exc: Exception) -> tuple[str, str]:
    """(errorCode, reason) a user can act on."""
    if isinstance(exc, FileNotFoundError):
        return "artifact_missing", str(exc)
    if isinstance(exc, ValueError):
        return "invalid_data", f"the data or config cannot be trained: {exc}"
    return "training_error", f"{type(exc).__name__}: {exc}"[:2000]


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


def _run_claimed(job: TrainingJob, progress: Any) -> Outcome:
    job_id = job.pk
    worker = job.worker
    config = FineTuningConfig.from_wire(job.config)
    try:
        spec, bars, result = _train(job, config, progress)
    except Exception as exc:
        if not isinstance(exc, ValueError | FileNotFoundError):
            logger.exception("training job %s failed", job_id)
        progress.close()  # the last progress event goes out before the terminal status
        code, reason = _failure(exc)
        _with_db_retry(lambda: _finish(job_id, JobStatus.FAILED, worker, error_code=code, error=reason), "failing")
        return Outcome(JobStatus.FAILED)
    progress.close()
    if progress.taken_over.is_set():
        return Outcome("abandoned")  # the reaper gave the job to another worker
    if result.status == "succeeded" and config.activation_policy == ActivationPolicy.IF_BETTER:
        rival = _score_active_on_window(job, spec, bars)
    else:
        rival = None
    if result.status == "stopped":
        if progress.shutdown.is_set() and not progress.stop.is_set():
            reason = "worker shut down; resuming from the last checkpoint"
            _with_db_retry(
                lambda: training_job_requeue(job_id=job_id, reason=reason, attempt_failed=False), "requeueing"
            )
            return Outcome(JobStatus.QUEUED)
        _with_db_retry(lambda: _finish(job_id, JobStatus.STOPPED, worker), "stopping")
        return Outcome(JobStatus.STOPPED)
    try:
        version = _with_db_retry(
            lambda: _finish_succeeded(job_id, result, config, rival, worker), "registering the version"
        )
    except Exception as exc:
        logger.exception("registering the version of job %s failed", job_id)
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        _with_db_retry(
            lambda: _finish(job_id, JobStatus.FAILED, worker, error_code="registration_error", error=reason), "failing"
        )
        return Outcome(JobStatus.FAILED)
    if version is None:
        return Outcome("abandoned")
    shutil.rmtree(job_work_dir(job) / "artifact", ignore_errors=True)
    return Outcome(JobStatus.SUCCEEDED, version.version)


def _worker_alive(worker: str) -> bool | None:
    """True/False for a worker on this host; None when it ran elsewhere (only the heartbeat tells)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed worker whose parent died too stays a zombie until init reaps it: that is gone
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def training_jobs_reap() -> list[tuple[int, str]]:
    """Find running/stopping jobs whose worker is gone; resume them, stop them, or fail them.

    A worker is gone when its process no longer exists on this host, or when its heartbeat is
    older than TRAINING_HEARTBEAT_TIMEOUT_S. Queued jobs that the broker never accepted (it was
    down when they were started) are handed over again. Returns (job id, what was done) pairs.
    """
    from models_mgmt.tasks import training_job_enqueue

    stale_before = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT_S)
    done: list[tuple[int, str]] = []
    never_enqueued = TrainingJob.objects.filter(
        status=JobStatus.QUEUED, enqueued_at__isnull=True, created_at__lt=timezone.now() - timedelta(seconds=30)
    ).values_list("pk", flat=True)
    for job_id in list(never_enqueued):
        if training_job_enqueue(job_id):
            done.append((job_id, "enqueued"))
    candidates = TrainingJob.objects.filter(status__in=(JobStatus.RUNNING, JobStatus.STOPPING)).values_list(
        "pk", "worker", "heartbeat_at"
    )
    for job_id, worker, heartbeat in list(candidates):
        alive = _worker_alive(worker)
        if alive is not False and heartbeat and heartbeat >= stale_before:
            continue  # a live worker keeps its heartbeat fresh; a stale one is stuck (or elsewhere and gone)
        with transaction.atomic():
            job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
            if job is None or job.worker != worker or job.status not in (JobStatus.RUNNING, JobStatus.STOPPING):
                continue  # moved on since we looked
        if job.status == JobStatus.STOPPING:
            _finish(job_id, JobStatus.STOPPED, error="worker lost while stopping; checkpoint kept")
            done.append((job_id, "stopped"))
        elif job.attempts < settings.TRAINING_MAX_ATTEMPTS:
            training_job_requeue(
                job_id=job_id, reason=f"worker {worker or '?'} lost; resuming from the last checkpoint"
            )
            done.append((job_id, "requeued"))
        else:
            _finish(
                job_id,
                JobStatus.FAILED,
                error_code="worker_lost",
                error=f"the worker running this job was lost {job.attempts} time(s); giving up",
            )
            done.append((job_id, "failed"))
    return done
