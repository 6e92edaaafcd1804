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

from models_mgmt.monitoring.alerts import monitoring_checks_run as _monitoring_checks_run
from models_mgmt.monitoring.drift import drift_reports_warm as _drift_reports_warm
from models_mgmt.monitoring.predictions import predictions_resolve as _predictions_resolve
from models_mgmt.training.progress import JobProgress
from models_mgmt.training.reaper import training_jobs_reap as _training_jobs_reap
from models_mgmt.training.worker import training_job_execute

logger = logging.getLogger(__name__)
__all__ = [
    "drift_reports_warm",
    "monitoring_checks_run",
    "predictions_resolve",
    "training_job_run",
    "training_jobs_reap",
]


def training_job_run(job_id: int) -> dict[str, Any]:
    """Run a job in this worker. SIGTERM makes the run checkpoint and requeue, then the worker exits."""
    progress = JobProgress(job_id=job_id)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
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
    return _training_jobs_reap()


def predictions_resolve(dataset_id: int | None = None) -> int:
    return _predictions_resolve(dataset_id=dataset_id)


def monitoring_checks_run() -> list[tuple[str, str]]:
    return _monitoring_checks_run()


def drift_reports_warm(model_id: int | None = None, dataset_id: int | None = None) -> list[str]:
    return _drift_reports_warm(model_id=model_id, dataset_id=dataset_id)
