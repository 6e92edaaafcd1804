"""Reads. Every read takes the user and returns only rows the user may see.

A model the user may not view does not exist for them: `ai_model_get` raises NotFound, so an
endpoint cannot forget the object check.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from guardian.shortcuts import get_objects_for_user

from models_mgmt.choices import LIVE_JOB_STATUSES, PERM_VIEW, VersionStatus
from models_mgmt.models import AIModel, AuditEvent, Dataset, ModelVersion, TrainingJob
from models_mgmt.services.errors import NotFound


def ai_models_visible(user: Any, codename: str = PERM_VIEW) -> QuerySet[AIModel]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return AIModel.objects.none()
    return get_objects_for_user(user, f"models_mgmt.{codename}", klass=AIModel, accept_global_perms=True)


def ai_model_list(user: Any) -> QuerySet[AIModel]:
    """Visible models with their active version and live job prefetched (constant query count)."""
    return (
        ai_models_visible(user)
        .select_related("owner", "default_dataset")
        .prefetch_related(
            Prefetch(
                "versions",
                queryset=ModelVersion.objects.filter(status=VersionStatus.ACTIVE),
                to_attr="active_versions",
            ),
            Prefetch("jobs", queryset=TrainingJob.objects.filter(status__in=LIVE_JOB_STATUSES), to_attr="live_jobs"),
        )
        .order_by("name")
    )


def ai_model_get(user: Any, name: str) -> AIModel:
    model = ai_model_list(user).filter(name=name).first()
    if model is None:
        raise NotFound(f"AI model '{name}' not found.")
    return model


def model_version_list(user: Any, model_name: str) -> QuerySet[ModelVersion]:
    model = ai_model_get(user, model_name)
    return model.versions.select_related("model", "parent", "dataset").order_by("-created_at", "-id")


def model_version_get(user: Any, model_name: str, version: str) -> ModelVersion:
    found = model_version_list(user, model_name).filter(version=version).first()
    if found is None:
        raise NotFound(f"Version '{version}' of model '{model_name}' not found.")
    return found


def active_version_of(model: AIModel) -> ModelVersion | None:
    prefetched = getattr(model, "active_versions", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return model.versions.filter(status=VersionStatus.ACTIVE).first()


def live_job_of(model: AIModel) -> TrainingJob | None:
    prefetched = getattr(model, "live_jobs", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return model.jobs.filter(status__in=LIVE_JOB_STATUSES).first()


def training_job_list(user: Any) -> QuerySet[TrainingJob]:
    return (
        TrainingJob.objects.filter(model__in=ai_models_visible(user))
        .select_related("model", "dataset", "version", "base_version", "created_by")
        .order_by("-created_at", "-id")
    )


def training_job_get(user: Any, job_id: int) -> TrainingJob:
    job = training_job_list(user).prefetch_related("epochs").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Training job {job_id} not found.")
    return job


def training_job_latest(user: Any, model_name: str) -> TrainingJob:
    model = ai_model_get(user, model_name)
    job = training_job_list(user).prefetch_related("epochs").filter(model=model).first()
    if job is None:
        raise NotFound(f"AI model '{model_name}' has no training job yet.")
    return job


def dataset_list(user: Any) -> QuerySet[Dataset]:
    if not getattr(user, "is_authenticated", False) or not user.has_perm("models_mgmt.view_dataset"):
        return Dataset.objects.none()
    return Dataset.objects.select_related("created_by").order_by("name")


def dataset_get(user: Any, name: str) -> Dataset:
    dataset = dataset_list(user).filter(name=name).first()
    if dataset is None:
        raise NotFound(f"Dataset '{name}' not found.")
    return dataset


def audit_event_list(user: Any) -> QuerySet[AuditEvent]:
    """Events of models the user may view; events not tied to a model need the audit permission."""
    from django.db.models import Q

    if not getattr(user, "is_authenticated", False) or not user.has_perm("models_mgmt.view_auditevent"):
        return AuditEvent.objects.none()
    if user.is_superuser:
        return AuditEvent.objects.select_related("actor").order_by("-created_at", "-id")
    return (
        AuditEvent.objects.filter(Q(ai_model__in=ai_models_visible(user)) | Q(ai_model_name=""))
        .select_related("actor")
        .order_by("-created_at", "-id")
    )


# Metrics a comparison lines up, and whether a higher value is better.
COMPARED_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "accuracy", True),
    ("responseTime", "response_time_ms", False),
    ("patternRecognition", "performance_metrics.patternRecognition", True),
    ("signalAccuracy", "performance_metrics.signalAccuracy", True),
    ("riskAssessment", "performance_metrics.riskAssessment", True),
    ("overallScore", "performance_metrics.overallScore", True),
    ("backtestSharpe", "backtest.sharpe", True),
    ("backtestReturn", "backtest.cumulativeReturn", True),
    ("backtestMaxDrawdown", "backtest.maxDrawdown", False),
    ("validationLoss", "metadata.loss", False),
)
MAX_COMPARED_VERSIONS = 20


def _metric_value(version: ModelVersion, path: str) -> float | None:
    head, _, key = path.partition(".")
    value = getattr(version, head)
    if key:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def model_version_comparison(
    user: Any,
    model_name: str,
    versions: list[str] | None,
    start: Any = None,
    end: Any = None,
) -> dict[str, Any]:
    """Versions side by side: each stored metric's value per version and which version is best,
    and (`heldOut`) every version re-evaluated on one common held-out window.

    Without a list, the most recent MAX_COMPARED_VERSIONS versions are compared.
    """
    from models_mgmt.monitoring import held_out_comparison

    queryset = model_version_list(user, model_name)
    if versions:
        chosen = list(queryset.filter(version__in=versions))
        missing = sorted(set(versions) - {v.version for v in chosen})
        if missing:
            raise NotFound(f"Model '{model_name}' has no version(s): {', '.join(missing)}.")
    else:
        chosen = list(queryset[:MAX_COMPARED_VERSIONS])
    rows = []
    for label, path, higher_is_better in COMPARED_METRICS:
        values = {v.version: _metric_value(v, path) for v in chosen}
        present = {k: x for k, x in values.items() if x is not None}
        best = None
        if len(present) >= 2 and len(set(present.values())) > 1:
            best = (max if higher_is_better else min)(present, key=present.__getitem__)
        rows.append({"metric": label, "higherIsBetter": higher_is_better, "values": values, "best": best})
    model = ai_model_get(user, model_name)
    held_out = held_out_comparison(model, chosen, start=start, end=end)
    return {"modelName": model_name, "versions": chosen, "metrics": rows, "heldOut": held_out}


# --- Monitoring ----------------------------------------------------------------------------------


def model_live_metrics(user: Any, model_name: str, since: Any) -> dict[str, Any]:
    from models_mgmt.monitoring import live_metrics

    model = ai_model_get(user, model_name)
    active = active_version_of(model)
    return {"model": model, "active": active, "live": live_metrics(model, active, since)}


def model_drift_report(
    user: Any, model_name: str, *, dataset_name: str | None = None, start: Any = None, end: Any = None
) -> dict[str, Any]:
    """A drift report computed now (nothing stored), with the history the schedule kept."""
    from models_mgmt.models import DriftReport
    from models_mgmt.monitoring import drift_report_compute

    model = ai_model_get(user, model_name)
    dataset = dataset_get(user, dataset_name) if dataset_name else None
    report = drift_report_compute(model, active_version_of(model), dataset=dataset, start=start, end=end)
    report["history"] = [
        {"id": r.pk, "createdAt": r.created_at.isoformat(), "verdict": r.verdict, "driftScore": r.drift_score,
         "recommendation": r.recommendation, "version": r.report.get("activeVersion")}
        for r in DriftReport.objects.filter(model=model).order_by("-created_at", "-id")[:20]
    ]  # fmt: skip
    return report


def alert_list(user: Any, model_name: str, status: str | None = None) -> QuerySet:
    from models_mgmt.models import Alert

    model = ai_model_get(user, model_name)
    alerts = Alert.objects.filter(model=model).select_related("version", "acknowledged_by", "model")
    return alerts.filter(status=status) if status else alerts
