"""django-q2 entry points: each takes ids and calls one worker function or service.

The queue names these by dotted path (`models_mgmt.tasks.<name>`), in enqueued tasks and in the
schedules stored in the database, so the names are part of the deployment: keep them.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Any

from django.db import connection

from models_mgmt.choices import JobStatus
from models_mgmt.monitoring.alerts import monitoring_checks_run as _monitoring_checks_run
from models_mgmt.monitoring.drift import drift_reports_warm as _drift_reports_warm
from models_mgmt.monitoring.experiments import experiments_evaluate_running
from models_mgmt.monitoring.guardrails import guardrail_checks_after_bars
from models_mgmt.monitoring.guardrails import guardrail_checks_run as _guardrail_checks_run
from models_mgmt.monitoring.predictions import predictions_resolve as _predictions_resolve
from models_mgmt.services.training_jobs import training_job_requeue
from models_mgmt.training.progress import JobProgress
from models_mgmt.training.reaper import training_jobs_reap as _training_jobs_reap
from models_mgmt.training.worker import Outcome, training_job_execute

logger = logging.getLogger(__name__)
__all__ = [
    "drift_reports_warm",
    "guardrail_checks_run",
    "monitoring_checks_run",
    "predictions_resolve",
    "training_job_run",
    "training_jobs_reap",
]


class ShutdownBeforeTraining(BaseException):
    """A stop signal while a claimed job is still preparing (importing torch, loading bars, building
    features), which can take seconds and polls no flag. A BaseException, like KeyboardInterrupt,
    so no `except Exception` on the way swallows it; the job is requeued, its attempt not counted."""


def training_job_run(job_id: int) -> dict[str, Any]:
    """Run a job in this worker. SIGTERM makes the run checkpoint and requeue, then the worker exits.

    SIGINT does the same but leaves the exit to the cluster: it reaches every process of the
    cluster's group on Ctrl-C or bin/serve's stop, which is django-q2's graceful stop; workers
    ignore it otherwise, so without this a running job would hold the stop until its last epoch.
    """
    progress = JobProgress(job_id=job_id)
    received: list[int] = []
    aborted: list[bool] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.warning("worker %s got %s; checkpointing job %s", os.getpid(), signal.Signals(signum).name, job_id)
        received.append(signum)
        progress.shutdown.set()
        if progress.worker and not progress.training_started() and not aborted:
            aborted.append(True)  # once: a later signal must not interrupt the requeue
            raise ShutdownBeforeTraining  # claimed, still preparing: nothing would notice the flag for a while

    for signum in previous:
        signal.signal(signum, on_signal)
    try:
        outcome = training_job_execute(job_id=job_id, progress=progress)
    except ShutdownBeforeTraining:
        connection.close()  # the interrupted step may have left it mid-statement
        reason = "worker shut down before training started; queued again"
        training_job_requeue(job_id=job_id, reason=reason, attempt_failed=False)
        outcome = Outcome(JobStatus.QUEUED)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signal.SIGTERM in received:
        os.kill(os.getpid(), signal.SIGTERM)  # now exit as the sender asked
    return {"jobId": job_id, "status": outcome.status, "version": outcome.version}


def training_jobs_reap() -> list[tuple[int, str]]:
    return _training_jobs_reap()


def predictions_resolve(dataset_id: int | None = None) -> int:
    """After a bar append (`dataset_id`): resolve what the bars complete, then evaluate the
    guardrails of the models those predictions belong to, so a breach acts on the new labels, and
    the running shadow experiments, whose paired comparison the new labels extend."""
    resolved = _predictions_resolve(dataset_id=dataset_id)
    if resolved:
        experiments_evaluate_running()
    if dataset_id is not None:
        guardrail_checks_after_bars(dataset_id)
    return resolved


def guardrail_checks_run() -> list[tuple[str, str, str]]:
    return _guardrail_checks_run()


def monitoring_checks_run() -> list[tuple[str, str]]:
    return _monitoring_checks_run()


def drift_reports_warm(model_id: int | None = None, dataset_id: int | None = None) -> list[str]:
    return _drift_reports_warm(model_id=model_id, dataset_id=dataset_id)
