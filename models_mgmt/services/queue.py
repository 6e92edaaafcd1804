"""Handing work to the django-q2 workers. A broker that is down must not turn a committed change
into an error: the failure is logged and a schedule (or the reaper) hands the work over later.

One broker object per process: django-q2's `async_task` builds a new one per call unless given one
(with Redis a new client and TCP connection per enqueue). The ORM broker closes the thread's
database connection before each use when it runs outside a transaction (`close_old_connections`:
with `CONN_MAX_AGE=0` a full reconnect for every enqueue, in the request thread); inside
`transaction.atomic()` it does not, and the INSERT of its queue row commits on its own.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import django_q.tasks
from django.db import transaction
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf

logger = logging.getLogger(__name__)
# Entry points in models_mgmt/tasks.py, named by dotted path (the queue stores these names).
RUN_TRAINING = "models_mgmt.tasks.training_job_run"
RESOLVE_PREDICTIONS = "models_mgmt.tasks.predictions_resolve"
WARM_DRIFT_REPORTS = "models_mgmt.tasks.drift_reports_warm"

_brokers: dict[tuple[int, str | None], Broker] = {}
_lock = threading.Lock()


def _broker() -> Broker:
    """This process's broker (a forked worker builds its own: the key holds the pid)."""
    key = (os.getpid(), Conf.CLUSTER_NAME)
    with _lock:
        broker = _brokers.get(key)
        if broker is None:
            broker = _brokers[key] = get_broker()
        return broker


def task_enqueue(task: str, *args: Any, why_later: str, **kwargs: Any) -> str | None:
    """Enqueue `task`; None (logged, with what will do it later) when the broker refuses."""
    try:
        if Conf.ORM:
            with transaction.atomic(using=Conf.ORM):
                return str(django_q.tasks.async_task(task, *args, broker=_broker(), **kwargs))
        return str(django_q.tasks.async_task(task, *args, broker=_broker(), **kwargs))
    except Exception:
        logger.exception("could not enqueue %s%s; %s", task, args or "", why_later)
        return None
