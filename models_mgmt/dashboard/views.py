"""Server-rendered dashboard: four tabs behind the login.

The pages are shells rendered from the same permission-filtered selectors the API uses; every
action (start, stop, activate, compare, drift check) is a fetch() to the REST API with the session
cookie, so it goes through the API's validation and services. Live progress comes from the
websocket feed. What a page shows is shaped in `presenters`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from models_mgmt import selectors
from models_mgmt.choices import LIVE_JOB_STATUSES, VersionStatus
from models_mgmt.health import health_report
from models_mgmt.models import ModelVersion

from . import presenters as p

# --- views ----------------------------------------------------------------------------------------


def _page(request: HttpRequest, template: str, tab: str, **context: Any) -> HttpResponse:
    return render(request, f"dashboard/{template}", {"tab": tab, **context})


@login_required
def models_tab(request: HttpRequest) -> HttpResponse:
    rows = p.model_rows(request.user)
    jobs_now = selectors.training_job_list(request.user).filter(status__in=LIVE_JOB_STATUSES).count()
    overview = {
        "total": len(rows),
        "active": sum(1 for r in rows if r["active_version"]),
        "accuracy": p.pct(p.average([r["accuracy_value"] for r in rows])),
        "accuracy_edge": p.points(p.average([r["accuracy_edge_value"] for r in rows])),
        "jobs_now": jobs_now,
    }
    return _page(request, "models.html", "models", models=rows, overview=overview)


@login_required
def fine_tuning_tab(request: HttpRequest) -> HttpResponse:
    rows = p.model_rows(request.user)
    selected = p.selected_row(request, rows, prefer="finetune")
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
        defaults=p.finetune_defaults(model),
        hyperparameters=p.hyperparameter_fields(model.family) if model else [],
        base_versions=base_versions,
        datasets=datasets,
        history=history,
        job_cost=p.job_cost_text(selectors.job_cost_of(latest)) if latest else "—",
        model_cost=p.model_cost_text(request.user, model),
        search=p.search_view(request.user, model),
    )


@login_required
def versions_tab(request: HttpRequest) -> HttpResponse:
    rows = p.model_rows(request.user)
    selected = p.selected_row(request, rows)
    versions: list[ModelVersion] = []
    if selected:
        versions = list(selectors.model_version_list(request.user, selected["name"]))
    can_activate = bool(selected and "activate" in selected["perms"])
    costs = selectors.version_lineage_costs(versions[0].model) if versions else {}
    return _page(
        request,
        "versions.html",
        "versions",
        models=rows,
        selected=selected,
        can_activate=can_activate,
        versions=[p.version_view(v, can_activate, costs.get(v.pk)) for v in versions],
        chart=p.chart_series(versions),
    )


@login_required
def monitoring_tab(request: HttpRequest) -> HttpResponse:
    rows = p.model_rows(request.user)
    health = health_report()
    components = [
        p.component(label, health["components"].get(key, {"status": "unknown"}))
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
        average_accuracy=p.pct(p.average([r["accuracy_value"] for r in rows])),
        average_edge=p.points(p.average([r["accuracy_edge_value"] for r in rows])),
        with_active=sum(1 for r in rows if r["active_version"]),
        jobs=p.live_jobs(request.user),
        health_status=health["status"],
        components=components,
        drift_enabled=settings.MODEL_DRIFT_DETECTION_ENABLED,
    )
