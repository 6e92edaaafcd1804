"""Health of the parts the product needs: database, broker, training workers, channel layer."""

from __future__ import annotations

import time
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max
from django_q.brokers import get_broker
from django_q.status import Stat

from models_mgmt.choices import JobStatus
from models_mgmt.models import TrainingJob


def _check(fn: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = fn() or {}
        ok = detail.pop("ok", True)
    except Exception as exc:
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": "up" if ok else "down", "latencyMs": round((time.perf_counter() - started) * 1000, 2), **detail}


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"engine": connection.vendor}


def _broker() -> dict[str, Any]:
    """The default cluster's queue, and the training cluster's (the same one unless TRAINING_CLUSTER names another)."""
    broker = get_broker(settings.Q_CLUSTER["name"])
    if not broker.ping():
        return {"ok": False, "kind": type(broker).__name__}
    return {
        "kind": "redis" if settings.REDIS_URL else "orm",
        "queued": broker.queue_size(),
        "trainingQueued": get_broker(settings.TRAINING_CLUSTER).queue_size(),
        "trainingCluster": settings.TRAINING_CLUSTER,
        "monitoringCluster": settings.MONITORING_CLUSTER,
    }


def _workers() -> dict[str, Any]:
    clusters = [s for s in Stat.get_all() if s.status not in ("Stopped",)]
    workers = sum(len(s.workers) for s in clusters)
    return {"ok": bool(clusters), "clusters": len(clusters), "workers": workers}


def _jobs() -> dict[str, Any]:
    """Pending training work and the last heartbeat any training worker wrote."""
    counts = dict(
        TrainingJob.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING])
        .values_list("status")
        .annotate(n=Count("id"))
    )
    last = TrainingJob.objects.aggregate(at=Max("heartbeat_at"))["at"]
    return {
        "queued": counts.get(JobStatus.QUEUED, 0),
        "running": counts.get(JobStatus.RUNNING, 0) + counts.get(JobStatus.STOPPING, 0),
        "lastWorkerHeartbeat": last.isoformat() if last else None,
    }


def _channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    return {"ok": layer is not None, "backend": type(layer).__name__ if layer else None}


def health_report() -> dict[str, Any]:
    components = {
        "database": _check(_database),
        "broker": _check(_broker),
        "workers": _check(_workers),
        "channelLayer": _check(_channel_layer),
        "jobs": _check(_jobs),
    }
    status = "ok" if all(c["status"] == "up" for c in components.values()) else "degraded"
    return {"status": status, "components": components}
