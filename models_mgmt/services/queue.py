"""Handing work to the django-q2 workers. A broker that is down must not turn a committed change
into an error: the failure is logged and a schedule (or the reaper) hands the work over later."""

from __future__ import annotations

import logging
from typing import Any

import django_q.tasks

logger = logging.getLogger(__name__)
# Entry points in models_mgmt/tasks.py, named by dotted path (the queue stores these names).
RUN_TRAINING = "models_mgmt.tasks.training_job_run"
RESOLVE_PREDICTIONS = "models_mgmt.tasks.predictions_resolve"
WARM_DRIFT_REPORTS = "models_mgmt.tasks.drift_reports_warm"


def task_enqueue(task: str, *args: Any, why_later: str, **kwargs: Any) -> str | None:
    """Enqueue `task`; None (logged, with what will do it later) when the broker refuses."""
    try:
        return str(django_q.tasks.async_task(task, *args, **kwargs))
    except Exception:
        logger.exception("could not enqueue %s%s; %s", task, args or "", why_later)
        return None
