"""django-q2 entry points: each takes ids and calls one service."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

logger = logging.getLogger(__name__)
RUN_TASK = "models_mgmt.tasks.training_job_run"


def training_job_enqueue(job_id: int) -> str | None:
    """Hand a job to the training workers (called on commit of the transaction that queued it).

    A broker that is down must not turn a committed start into an error: the job stays queued
    without `enqueued_at`, and the reaper hands it over again once the broker answers.
    """
    from django.utils import timezone
    from django_q.tasks import async_task

    from models_mgmt.models import TrainingJob

    try:
        task_id = async_task(
            RUN_TASK, job_id, task_name=f"training-job-{job_id}-{os.urandom(3).hex()}", group="training"
        )
    except Exception:
        logger.exception("could not enqueue training job %s; the reaper will retry", job_id)
        return None
    TrainingJob.objects.filter(pk=job_id, status="queued").update(enqueued_at=timezone.now())
    return task_id


def training_job_run(job_id: int) -> dict[str, Any]:
    """Run a job in this worker. SIGTERM makes the run checkpoint and requeue, then the worker exits."""
    from models_mgmt.progress import JobProgress
    from models_mgmt.services.training_run import training_job_execute

    progress = JobProgress(job_id=job_id)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        logger.warning("worker %s got SIGTERM; checkpointing job %s", os.getpid(), job_id)
        progress.shutdown.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        outcome = training_job_execute(job_id=job_id, progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if progress.shutdown.is_set():
        os.kill(os.getpid(), signal.SIGTERM)  # now exit as the sender asked
    return {"jobId": job_id, "status": outcome.status, "version": outcome.version}


def training_jobs_reap() -> list[tuple[int, str]]:
    from models_mgmt.services.training_run import training_jobs_reap as reap

    return reap()


def predictions_resolve(dataset_id: int | None = None) -> int:
    from models_mgmt.services.monitoring import predictions_resolve as resolve

    return resolve(dataset_id=dataset_id)


def monitoring_checks_run() -> list[tuple[str, str]]:
    from models_mgmt.services.monitoring import monitoring_checks_run as run

    return run()
