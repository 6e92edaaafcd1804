from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from models_mgmt.choices import JOB_TRANSITIONS, LIVE_JOB_STATUSES, PERM_FINETUNE, JobStatus
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.models import AIModel, Dataset, ModelVersion, TrainingJob

from .ai_models import require_model_perm
from .audit import audit_record
from .errors import Conflict, Unavailable


def training_job_transition(job: TrainingJob, to: str, **fields: Any) -> TrainingJob:
    """Move a locked job row to `to`, refusing any edge that JOB_TRANSITIONS does not allow."""
    if to not in JOB_TRANSITIONS[job.status]:
        raise Conflict(f"Job {job.pk} is {job.status}; it cannot become {to}.", code="invalid_transition")
    job.status = to
    for key, value in fields.items():
        setattr(job, key, value)
    if to in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED):
        job.finished_at = timezone.now()
    job.save()
    from models_mgmt.progress import publish_job_event

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
    actor: Any,
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
    require_model_perm(actor, model, PERM_FINETUNE, "start training")
    live = TrainingJob.objects.select_related("model").filter(model=model, status__in=LIVE_JOB_STATUSES).first()
    if live is not None:
        raise _conflict_with(live)
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                model=model,
                created_by=actor,
                dataset=dataset,
                base_version=base_version,
                config=config.to_wire(),
                status=JobStatus.QUEUED,
                total_epochs=config.epochs,
            )
    except IntegrityError as exc:
        # Lost a race with a concurrent start: the partial unique index decided.
        live = TrainingJob.objects.select_related("model").filter(model=model, status__in=LIVE_JOB_STATUSES).first()
        if live is None:
            raise
        raise _conflict_with(live) from exc
    from models_mgmt.progress import publish_job_event

    publish_job_event(job, "job.status")
    audit_record(
        actor=actor, action="job.started", obj=job, ai_model=model, after={"status": job.status, "config": job.config}
    )
    from models_mgmt.tasks import training_job_enqueue

    job_id = job.pk
    transaction.on_commit(lambda: training_job_enqueue(job_id))
    return job


@transaction.atomic
def training_job_stop(*, actor: Any, model: AIModel) -> TrainingJob:
    """Stop the model's live job: a queued one stops at once, a running one is asked to stop."""
    require_model_perm(actor, model, PERM_FINETUNE, "stop training")
    job = TrainingJob.objects.select_for_update().filter(model=model, status__in=LIVE_JOB_STATUSES).first()
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
