"""Handing work to the django-q2 workers. A broker that is down must not turn a committed change
into an error: the failure is logged and a schedule (or the reaper) hands the work over later.

One broker object per process: django-q2's `async_task` builds a new one per call unless given one
(with Redis a new client and TCP connection per enqueue). The ORM broker closes the thread's
database connection before each use when it runs outside a transaction (`close_old_connections`:
with `CONN_MAX_AGE=0` a full reconnect for every enqueue, in the request thread); inside
`transaction.atomic()` it does not, and the INSERT of its queue row commits on its own.

Routing is django-q2's own: a cluster name is a queue (`django_q:<name>:q` in Redis, the OrmQ key
with the ORM broker), and a qcluster process serves the one its Q_CLUSTER_NAME names. Every
enqueue names its cluster: training work goes to TRAINING_CLUSTER, monitoring work to
MONITORING_CLUSTER (both default to the one cluster, Q_CLUSTER["name"]).

What a broker still holds differs: the ORM broker keeps a task's row until it is done (a row a dead
host had taken is handed out again after `retry`), while Redis pops a task when a cluster's pusher
takes it, ahead of its workers, so a host killed outright loses the tasks it had pulled;
`training_jobs_waiting` lets the reaper tell which queued jobs' tasks are still in Redis.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import django_q.tasks
from django.conf import settings
from django.db import transaction
from django_q.brokers import Broker, get_broker
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.signing import BadSignature, SignedPackage
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
# Entry points in models_mgmt/tasks.py, named by dotted path (the queue stores these names).
RUN_TRAINING = "models_mgmt.tasks.training_job_run"
RESOLVE_PREDICTIONS = "models_mgmt.tasks.predictions_resolve"
WARM_DRIFT_REPORTS = "models_mgmt.tasks.drift_reports_warm"

_brokers: dict[tuple[int, str], Broker] = {}
_lock = threading.Lock()


def _broker(cluster: str) -> Broker:
    """This process's broker for `cluster`'s queue (a forked worker builds its own: the key holds the pid)."""
    key = (os.getpid(), cluster)
    with _lock:
        broker = _brokers.get(key)
        if broker is None:
            broker = _brokers[key] = get_broker(cluster)
        return broker


def task_enqueue(task: str, *args: Any, cluster: str, why_later: str, **kwargs: Any) -> str | None:
    """Enqueue `task` on `cluster`'s queue; None (logged, with what will do it later) when the broker refuses."""
    try:
        if Conf.ORM:
            with transaction.atomic(using=Conf.ORM):
                return str(django_q.tasks.async_task(task, *args, cluster=cluster, broker=_broker(cluster), **kwargs))
        return str(django_q.tasks.async_task(task, *args, cluster=cluster, broker=_broker(cluster), **kwargs))
    except Exception:
        logger.exception("could not enqueue %s%s on %s; %s", task, args or "", cluster, why_later)
        return None


def training_jobs_waiting(cluster: str) -> set[int] | None:
    """The ids of the training jobs whose task waits in `cluster`'s Redis queue (not those a host
    has pulled). None with any other broker (the ORM broker keeps a taken task's row, so nothing is
    lost) and when Redis does not answer: the reaper then re-sends nothing.

    Decoded with django-q2's own signing, as its pusher does; a package that does not decode
    (another SECRET_KEY) would not run on any host either, so it counts as absent.
    """
    broker = _broker(cluster)
    if not isinstance(broker, Redis):
        return None
    try:
        packages = broker.connection.lrange(broker.list_key, 0, -1)
    except RedisError:
        logger.exception("could not read %s's queue; the reaper looks again at its next pass", cluster)
        return None
    waiting: set[int] = set()
    for package in packages:
        try:
            task = SignedPackage.loads(package)
        except BadSignature:
            continue
        if task.get("func") == RUN_TRAINING and task.get("args"):
            waiting.add(int(task["args"][0]))  # training_job_enqueue: training_job_run(job_id)
    return waiting


def schedules_follow_monitoring_cluster(using: str = "default") -> int:
    """Put the product's schedules (reaper, monitoring checks: migrations 0004, 0007, 0016) on
    MONITORING_CLUSTER; run after every migrate. The default cluster's scheduler takes schedules
    without a cluster, so with the default name they keep none, as they were created."""
    cluster = None if settings.MONITORING_CLUSTER == Conf.PREFIX else settings.MONITORING_CLUSTER
    product = Schedule.objects.using(using).filter(func__startswith="models_mgmt.tasks.")
    return product.exclude(cluster=cluster).update(cluster=cluster)
