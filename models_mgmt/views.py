"""Server-rendered dashboard: four tabs behind the login.

The pages are shells rendered from the same permission-filtered selectors the API uses; every
action (start, stop, activate, compare, drift check) is a fetch() to the REST API with the session
cookie, so it goes through the API's validation and services. Live progress comes from the
websocket feed. Numbers are formatted here so templates stay dumb and nothing is invented: a
missing value is shown as missing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from models_mgmt import selectors
from models_mgmt.api.serializers import ModelVersionSerializer
from models_mgmt.choices import LIVE_JOB_STATUSES, VersionStatus
from models_mgmt.engine.families import FAMILIES
from models_mgmt.health import health_report
from models_mgmt.models import AIModel
from models_mgmt.permissions import model_perms_of

TASK_METRICS = (
    ("accuracy", "Accuracy"),
    ("patternRecognition", "Pattern recognition"),
    ("signalAccuracy", "Signal accuracy"),
    ("riskAssessment", "Risk assessment"),
    ("overallScore", "Overall score"),
)
BACKTEST_ROWS = (
    ("cumulativeReturn", "buyHoldReturn", "Cumulative return", "pct"),
    ("sharpe", "buyHoldSharpe", "Sharpe (annualised)", "num"),
    ("maxDrawdown", "buyHoldMaxDrawdown", "Max drawdown", "pct"),
)
ACTIVATABLE = (VersionStatus.READY, VersionStatus.DEPRECATED)


# --- formatting -----------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pct(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return "—" if number is None else f"{number * 100:.{digits}f} %"


def num(value: Any, digits: int = 3) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.{digits}f}"


def ms(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.2f} ms"


def seconds(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "—"
    return f"{number:.1f} s" if number < 120 else f"{number / 60:.1f} min"


def versus(value: Any, baseline: Any) -> dict[str, Any]:
    """A metric beside its baseline, with the difference in percentage points."""
    v, b = _number(value), _number(baseline)
    delta = None if v is None or b is None else (v - b) * 100
    return {
        "value": pct(v),
        "baseline": pct(b) if b is not None else "no baseline",
        "delta": "" if delta is None else f"{delta:+.1f} pt",
        "trend": "" if delta is None else ("up" if delta > 0.05 else "down" if delta < -0.05 else "flat"),
    }


# --- context builders -----------------------------------------------------------------------------


def _model_rows(user: Any) -> list[dict[str, Any]]:
    rows = []
    for model in selectors.ai_model_list(user):
        active = selectors.active_version_of(model)
        job = selectors.live_job_of(model)
        rows.append(
            {
                "name": model.name,
                "family": model.family,
                "description": model.description,
                "status": "training" if job else ("active" if active else "idle"),
                "active_version": active.version if active else None,
                "accuracy": pct(active.accuracy) if active else "—",
                "accuracy_value": active.accuracy if active else None,
                "response_time": ms(active.response_time_ms) if active else "—",
                "job": job,
                "perms": [c.removesuffix("_aimodel") for c in model_perms_of(user, model)],
            }
        )
    return rows


def _average(values: list[Any]) -> float | None:
    numbers = [n for n in (_number(v) for v in values) if n is not None]
    return sum(numbers) / len(numbers) if numbers else None


def _selected(request: HttpRequest, rows: list[dict[str, Any]], prefer: str | None = None) -> dict[str, Any] | None:
    wanted = request.GET.get("model")
    for row in rows:
        if row["name"] == wanted:
            return row
    if prefer:
        for row in rows:
            if prefer in row["perms"]:
                return row
    return rows[0] if rows else None


def _live_jobs(user: Any) -> list[dict[str, Any]]:
    jobs = selectors.training_job_list(user).filter(status__in=LIVE_JOB_STATUSES)[:50]
    return [
        {
            "id": job.pk,
            "model": job.model.name,
            "status": job.status,
            "progress": round(job.progress or 0),
            "epoch": job.epoch,
            "total_epochs": job.total_epochs,
            "created_by": job.created_by.username if job.created_by else "—",
        }
        for job in jobs
    ]


def _version_view(data: dict[str, Any], can_activate: bool) -> dict[str, Any]:
    """One version as the Versions tab shows it: each metric beside its baseline."""
    perf = data.get("performanceMetrics") or {}
    baselines = data.get("baselines") or {}
    metadata = data.get("metadata") or {}
    backtest = data.get("backtest") or {}
    metrics = []
    for key, label in TASK_METRICS:
        value = data.get("accuracy") if key == "accuracy" else perf.get(key)
        # accuracy is defined as overallScore, so its naive baseline is overallScore's.
        baseline = baselines.get("overallScore" if key == "accuracy" else key)
        metrics.append({"key": key, "label": label, **versus(value, baseline)})
    backtest_rows = [
        {
            "label": label,
            "value": (pct if kind == "pct" else num)(backtest.get(key)),
            "baseline": (pct if kind == "pct" else num)(backtest.get(base)),
        }
        for key, base, label, kind in BACKTEST_ROWS
    ]
    lineage = metadata.get("lineage") or {}
    return {
        "version": data["version"],
        "status": data["status"],
        "trained": data.get("trainingDate"),
        "metrics": metrics,
        "response_time": ms(data.get("responseTime")),
        "backtest": backtest_rows,
        "hit_rate": pct(backtest.get("hitRate")),
        "trades": backtest.get("trades", "—"),
        "has_backtest": bool(backtest),
        "epochs": metadata.get("epochs", "—"),
        "best_epoch": metadata.get("bestEpoch", "—"),
        "loss": num(metadata.get("loss"), 4),
        "validation_accuracy": pct(metadata.get("validationAccuracy")),
        "duration": seconds(metadata.get("trainingDuration")),
        "training_data_size": data.get("trainingDataSize"),
        "hyperparameters": sorted((metadata.get("hyperparameters") or {}).items()),
        "parent": data.get("parentVersion") or "— (from scratch)",
        "dataset": data.get("dataset") or "—",
        "train_window": " to ".join(metadata.get("trainWindow") or []) or "—",
        "validation_window": " to ".join(metadata.get("validationWindow") or []) or "—",
        "job_id": lineage.get("jobId"),
        "code_revision": lineage.get("codeRevision"),
        "checksum": (data.get("checksum") or "")[:12],
        "can_activate": can_activate and data["status"] in ACTIVATABLE,
    }


def _chart_series(versions: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics across versions, oldest first, as plain numbers for the chart (null stays null)."""
    ordered = list(reversed(versions))
    series: dict[str, list[float | None]] = {}
    for key, label in TASK_METRICS:
        values = [
            _number(v.get("accuracy") if key == "accuracy" else (v.get("performanceMetrics") or {}).get(key))
            for v in ordered
        ]
        series[label] = values
    return {"labels": [v["version"] for v in ordered], "series": series}


# --- views ----------------------------------------------------------------------------------------


def _page(request: HttpRequest, template: str, tab: str, **context: Any) -> HttpResponse:
    return render(request, f"dashboard/{template}", {"tab": tab, **context})


@login_required
def models_tab(request: HttpRequest) -> HttpResponse:
    rows = _model_rows(request.user)
    jobs_now = selectors.training_job_list(request.user).filter(status__in=LIVE_JOB_STATUSES).count()
    overview = {
        "total": len(rows),
        "active": sum(1 for r in rows if r["active_version"]),
        "accuracy": pct(_average([r["accuracy_value"] for r in rows])),
        "jobs_now": jobs_now,
    }
    return _page(request, "models.html", "models", models=rows, overview=overview)


def _finetune_defaults(model: AIModel | None) -> dict[str, Any]:
    epochs = settings.DEFAULT_TRAINING_EPOCHS
    return {
        "epochs": epochs,
        "learningRate": settings.DEFAULT_LEARNING_RATE,
        "batchSize": settings.DEFAULT_BATCH_SIZE,
        "validationSplit": settings.DEFAULT_VALIDATION_SPLIT,
        "earlyStoppingPatience": min(settings.DEFAULT_EARLY_STOPPING_PATIENCE, epochs),
        "dataset": (model.default_dataset.name if model and model.default_dataset else settings.DEFAULT_DATASET),
    }


def _hyperparameter_fields(family_name: str) -> list[dict[str, Any]]:
    family = FAMILIES.get(family_name)
    if family is None:
        return []
    fields = []
    for key, param in family.params.items():
        if param.kind is list:
            kind, value = "list", ", ".join(str(v) for v in param.default)
        elif param.kind is bool:
            kind, value = "bool", param.default
        else:
            kind, value = ("int" if param.kind is int else "float"), param.default
        fields.append(
            {
                "key": key,
                "kind": kind,
                "value": value,
                "help": param.help,
                "min": param.minimum,
                "max": param.maximum,
                "step": "1" if kind == "int" else "any",
            }
        )
    return fields


@login_required
def fine_tuning_tab(request: HttpRequest) -> HttpResponse:
    rows = _model_rows(request.user)
    selected = _selected(request, rows, prefer="finetune")
    model = selectors.ai_model_get(request.user, selected["name"]) if selected else None
    base_versions = (
        list(
            model.versions.filter(
                status__in=(VersionStatus.ACTIVE, VersionStatus.READY, VersionStatus.DEPRECATED)
            ).order_by("-created_at", "-id")
        )
        if model
        else []
    )
    datasets = list(selectors.dataset_list(request.user))
    latest = selectors.training_job_list(request.user).filter(model=model).first() if model else None
    history = (
        {
            "jobId": latest.pk,
            "epochs": [
                {"epoch": e.epoch, "trainLoss": e.train_loss, "valLoss": e.val_loss} for e in latest.epochs.all()
            ],
        }
        if latest
        else None
    )
    return _page(
        request,
        "fine_tuning.html",
        "fine-tuning",
        models=rows,
        selected=selected,
        can_finetune=bool(selected and "finetune" in selected["perms"]),
        defaults=_finetune_defaults(model),
        hyperparameters=_hyperparameter_fields(model.family) if model else [],
        base_versions=base_versions,
        datasets=datasets,
        history=history,
    )


@login_required
def versions_tab(request: HttpRequest) -> HttpResponse:
    rows = _model_rows(request.user)
    selected = _selected(request, rows)
    data: list[dict[str, Any]] = []
    if selected:
        data = ModelVersionSerializer(selectors.model_version_list(request.user, selected["name"]), many=True).data
    can_activate = bool(selected and "activate" in selected["perms"])
    return _page(
        request,
        "versions.html",
        "versions",
        models=rows,
        selected=selected,
        can_activate=can_activate,
        versions=[_version_view(v, can_activate) for v in data],
        chart=_chart_series(list(data)),
    )


def _component(label: str, state: dict[str, Any]) -> dict[str, Any]:
    detail = ", ".join(f"{k}: {v}" for k, v in state.items() if k not in ("status", "latencyMs"))
    latency = _number(state.get("latencyMs"))
    return {"name": label, "status": state.get("status", "unknown"), "detail": detail,
            "latency": "—" if latency is None else f"{latency:.1f} ms"}  # fmt: skip


@login_required
def monitoring_tab(request: HttpRequest) -> HttpResponse:
    rows = _model_rows(request.user)
    health = health_report()
    components = [
        _component(label, health["components"].get(key, {"status": "unknown"}))
        for key, label in (
            ("database", "Database"),
            ("broker", "Broker"),
            ("workers", "Training workers"),
            ("channelLayer", "Channel layer"),
        )
    ]
    return _page(
        request,
        "monitoring.html",
        "monitoring",
        models=rows,
        average_accuracy=pct(_average([r["accuracy_value"] for r in rows])),
        with_active=sum(1 for r in rows if r["active_version"]),
        jobs=_live_jobs(request.user),
        health_status=health["status"],
        components=components,
        drift_enabled=settings.MODEL_DRIFT_DETECTION_ENABLED,
    )
