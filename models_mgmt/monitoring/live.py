"""Live metrics of a model from its prediction ledger: accuracy per version and task (resolved
predictions only), serving latency percentiles and request rate over a window."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone

from models_mgmt import selectors
from models_mgmt.engine import drift
from models_mgmt.engine.labels import METRIC_OF_TASK, TASKS
from models_mgmt.models import AIModel, ModelVersion, Prediction
from models_mgmt.permissions import UserLike


def accuracy_summary(correct_rows: list[dict[str, bool]]) -> dict[str, Any]:
    """Per task: accuracy, correct, count and a 95% Wilson interval; plus their mean (overall)."""
    tasks: dict[str, Any] = {}
    for task in TASKS:
        marks = [bool(row[task]) for row in correct_rows if row and row.get(task) is not None]
        count, hits = len(marks), sum(marks)
        interval = drift.wilson_interval(hits, count)
        tasks[METRIC_OF_TASK[task]] = {
            "accuracy": round(hits / count, 6) if count else None,
            "correct": hits,
            "count": count,
            "ci95": [round(interval[0], 6), round(interval[1], 6)] if interval else None,
            "enoughToJudge": count >= settings.MONITORING_MIN_SAMPLES,
        }
    values = [t["accuracy"] for t in tasks.values() if t["accuracy"] is not None]
    overall = round(sum(values) / len(values), 6) if len(values) == len(TASKS) else None
    return {
        "tasks": tasks,
        "overallScore": overall,
        "resolved": len(correct_rows),
        # Fewer resolved predictions than this say little (3 of 3 right is "100 %"): clients show the
        # count and "too few to judge" instead of the percentage.
        "minSamples": settings.MONITORING_MIN_SAMPLES,
        "enoughToJudge": len(correct_rows) >= settings.MONITORING_MIN_SAMPLES,
    }


def live_metrics(model: AIModel, active: ModelVersion | None, since: dt.datetime) -> dict[str, Any]:
    """The ledger over [since, now]: live accuracy per version and task, latency percentiles, rate."""
    import numpy as np  # heavy: numpy stays out of processes that never compute percentiles

    window = Prediction.objects.filter(model=model, created_at__gte=since)
    latencies = np.asarray(list(window.values_list("latency_ms", flat=True)), dtype=np.float64)
    minutes = max((timezone.now() - since).total_seconds() / 60.0, 1e-9)
    rows = list(
        window.filter(resolved_at__isnull=False).values_list("version__version", "correct").order_by("created_at")
    )
    by_version: dict[str, list[dict[str, bool]]] = {}
    for version, correct in rows:
        by_version.setdefault(version, []).append(correct or {})
    pending = window.filter(resolved_at__isnull=True).count()
    active_rows = by_version.get(active.version, []) if active else []
    active_live = accuracy_summary(active_rows)
    reason = None
    if not latencies.size:
        reason = "no predictions were served in this window"
    elif not active_rows:
        reason = (
            f"none of the {pending} prediction(s) of this window is resolved yet: a prediction is resolved "
            "once its horizon's bars have been appended to its dataset"
        )
    return {
        "version": active.version if active else None,
        **active_live,
        "pending": pending,
        "reason": reason,
        "byVersion": {v: accuracy_summary(r) for v, r in sorted(by_version.items())},
        "responseTime": {
            "p50": round(float(np.percentile(latencies, 50)), 3) if latencies.size else None,
            "p95": round(float(np.percentile(latencies, 95)), 3) if latencies.size else None,
            "p99": round(float(np.percentile(latencies, 99)), 3) if latencies.size else None,
            "unit": "ms",
        },
        "requests": int(latencies.size),
        "requestsPerMinute": round(latencies.size / minutes, 4),
        "windowMinutes": round(minutes),
    }


def model_live_metrics(user: UserLike, model_name: str, since: dt.datetime) -> dict[str, Any]:
    """The model the user may view, its active version and its live metrics since `since`."""
    model = selectors.ai_model_get(user, model_name)
    active = selectors.active_version_of(model)
    return {"model": model, "active": active, "live": live_metrics(model, active, since)}


def serving_latency(model: AIModel, since: dt.datetime, limit: int = 2000) -> dict[str, Any]:
    """p50 of the serving latency of the model's latest predictions since `since` (at most `limit`)."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    latencies = list(
        Prediction.objects.filter(model=model, created_at__gte=since)
        .order_by("-created_at")
        .values_list("latency_ms", flat=True)[:limit]
    )
    if not latencies:
        return {"p50": None, "requests": 0}
    return {"p50": round(float(np.percentile(latencies, 50)), 3), "requests": len(latencies)}
