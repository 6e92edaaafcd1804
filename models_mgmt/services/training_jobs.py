from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from models_mgmt.choices import JOB_TRANSITIONS, LIVE_JOB_STATUSES, PERM_FINETUNE, JobStatus
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.errors import Conflict, Unavailable
from models_mgmt.models import AIModel, Dataset, ModelVersion, TrainingEpoch, TrainingJob
from models_mgmt.permissions import UserLike, require_model_perm
from models_mgmt.realtime.events import publish_job_event

from .audit import audit_record
from .job_costs import job_cost_close
from .queue import RUN_TRAINING, task_enqueue

logger = logging.getLogger(__name__)


def training_job_enqueue(job_id: int) -> str | None:
    """Hand a job to the training workers (called on commit of the transaction that queued it).

    A broker that is down must not turn a committed start into an error: the job stays queued
    without `enqueued_at`, and the reaper hands it over again once the broker answers.
    """
    task_id = task_enqueue(
        RUN_TRAINING,
        job_id,
        task_name=f"training-job-{job_id}-{os.urandom(3).hex()}",
        cluster=settings.TRAINING_CLUSTER,
        group="training",
        why_later="the reaper will hand it over",
    )
    if task_id is None:
        return None
    TrainingJob.objects.filter(pk=job_id, status="queued").update(enqueued_at=timezone.now())
    return str(task_id)


def training_job_transition(job: TrainingJob, to: str, **fields: Any) -> TrainingJob:
    """Move a locked job row to `to`, refusing any edge that JOB_TRANSITIONS does not allow."""
    if to not in JOB_TRANSITIONS[job.status]:
        raise Conflict(f"Job {job.pk} is {job.status}; it cannot become {to}.", code="invalid_transition")
    job.status = to
    for key, value in fields.items():
        setattr(job, key, value)
    ended = to in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)
    if ended:
        job.finished_at = timezone.now()
    job.save()
    if ended:
        job_cost_close(job)  # a worker that is gone keeps the figures of its last heartbeat
    publish_job_event(job, "job.status")
    return job


def _conflict_with(job: TrainingJob) -> Conflict:
    return Conflict(
        f"AI model '{job.model.name}' already has a training job in progress (job {job.pk}, {job.status}).",
        code="job_in_progress",
    )


@transaction.atomic
def training_job_start(
    *,
    actor: UserLike,
    model: AIModel,
    config: FineTuningConfig,
    dataset: Dataset,
    base_version: ModelVersion | None,
) -> TrainingJob:
    """Create a queued job. At most one queued/running/stopping job per model (409 otherwise).

    The job is handed to the training worker only after the transaction commits, so a worker
    never sees a job that a rollback later erases.
    """
    if not settings.MODEL_TRAINING_ENABLED:
        raise Unavailable(
            "Training is disabled on this server (MODEL_TRAINING_ENABLED=false).", code="training_disabled"
        )
    starter = require_model_perm(actor, model, PERM_FINETUNE, "start training")
    # No read first: the partial unique index (one live job per model) decides, also between two
    # simultaneous starts, and the conflict names the job that holds the model. A job that ended
    # between the refused INSERT and that read no longer holds the model: try again.
    for attempt in range(3):
        try:
            with transaction.atomic():
                job = TrainingJob.objects.create(
                    model=model,
                    created_by=starter,
                    dataset=dataset,
                    base_version=base_version,
                    config=config.to_wire(),
                    status=JobStatus.QUEUED,
                    total_epochs=config.epochs,
                )
            break
        except IntegrityError as exc:
            live = TrainingJob.objects.select_related("model").filter(model=model, status__in=LIVE_JOB_STATUSES).first()
            if live is not None:
                raise _conflict_with(live) from exc
            if attempt == 2:
                raise
    publish_job_event(job, "job.status")
    audit_record(
        actor=actor, action="job.started", obj=job, ai_model=model, after={"status": job.status, "config": job.config}
    )
    job_id = job.pk
    transaction.on_commit(lambda: training_job_enqueue(job_id))
    return job


@transaction.atomic
def training_job_stop(*, actor: UserLike, model: AIModel) -> TrainingJob:
    """Stop the model's live job: a queued one stops at once, a running one is asked to stop."""
    require_model_perm(actor, model, PERM_FINETUNE, "stop training")
    job = (
        TrainingJob.objects.select_for_update(of=("self",))
        .select_related("model", "created_by", "dataset", "base_version", "version")
        .filter(model=model, status__in=LIVE_JOB_STATUSES)
        .first()
    )
    if job is None:
        raise Conflict(f"AI model '{model.name}' has no training job in progress.", code="no_job_in_progress")
    before = job.status
    if job.status == JobStatus.STOPPING:
        return job
    target = JobStatus.STOPPED if job.status == JobStatus.QUEUED else JobStatus.STOPPING
    training_job_transition(job, target)
    audit_record(
        actor=actor,
        action="job.stop_requested",
        obj=job,
        ai_model=model,
        before={"status": before},
        after={"status": job.status},
    )
    return job


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
        worker=f"{settings.WORKER_HOST}:{os.getpid()}",  # the reaper parses it
        error="",
        error_code="",
    )
    return job


@transaction.atomic
def training_job_device_record(*, job_id: int, worker: str, device: str) -> bool:
    """Note where the claiming worker trains the job ("cpu", "cuda:0", "cpu x2 gloo", ...).

    Only while that worker still owns the live job: False when it was reaped or ended meanwhile.
    """
    owned = TrainingJob.objects.filter(pk=job_id, worker=worker, status__in=(JobStatus.RUNNING, JobStatus.STOPPING))
    return owned.update(device=device) == 1


def training_job_finish(job_id: int, status: str, worker: str | None = None, **fields: Any) -> None:
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
        transaction.on_commit(lambda: training_job_enqueue(job_id))
    return True


def training_epochs_save(job_id: int, epochs: list[dict[str, Any]]) -> None:
    """Upsert per-epoch history rows (from live reports, or a finished run's whole history)."""
    TrainingEpoch.objects.bulk_create(
        [
            TrainingEpoch(
                job_id=job_id,
                epoch=e["epoch"],
                train_loss=e["train_loss"],
                val_loss=e["val_loss"],
                metrics=e["metrics"],
                duration_s=e["duration_s"],
            )
            for e in epochs
        ],
        update_conflicts=True,
        unique_fields=["job", "epoch"],
        update_fields=["train_loss", "val_loss", "metrics", "duration_s"],
    )
