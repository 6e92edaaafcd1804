"""REST API routes. Seed paths have no trailing slash; a trailing slash is accepted too."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from models_mgmt.models.ai_model import MODEL_NAME_PATTERN

from .views import (
    alerts,
    artifacts,
    audit,
    base_models,
    comparison,
    costs,
    datasets,
    drift,
    experiments,
    fine_tune,
    guardrails,
    jobs,
    metrics,
    models,
    predictions,
    studies,
    system,
    versions,
)

MODEL = rf"^model-management/models/(?P<name>{MODEL_NAME_PATTERN})"
EXPERIMENT = r"^model-management/experiments/(?P<experiment_id>[0-9]{1,18})"
VERSION = r"(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]{0,31})"


def route(pattern: str, view, name: str):
    return re_path(rf"{pattern}/?$", view.as_view(), name=name)


urlpatterns = [
    path("auth/token/", system.TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", system.TokenRefreshRotatingView.as_view(), name="token-refresh"),
    path("auth/token/blacklist/", system.TokenRevokeView.as_view(), name="token-blacklist"),
    path("health/", system.HealthView.as_view(), name="health"),
    path("ping/", system.PingView.as_view(), name="ping"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", system.SwaggerView.as_view(url_name="schema"), name="docs"),
    route(r"^model-management/models", models.ModelListView, "model-list"),
    route(MODEL, models.ModelDetailView, "model-detail"),
    route(rf"{MODEL}/access", models.ModelAccessView, "model-access"),
    route(rf"{MODEL}/versions", versions.VersionListView, "version-list"),
    route(rf"{MODEL}/versions/{VERSION}", versions.VersionDetailView, "version-detail"),
    route(rf"{MODEL}/versions/{VERSION}/activate", versions.VersionActivateView, "version-activate"),
    route(rf"{MODEL}/versions/{VERSION}/artifact", artifacts.VersionArtifactView, "version-artifact"),
    route(rf"{MODEL}/metrics", metrics.MetricsView, "model-metrics"),
    route(rf"{MODEL}/drift", drift.DriftView, "model-drift"),
    route(rf"{MODEL}/comparison", comparison.ComparisonView, "model-comparison"),
    route(rf"{MODEL}/cost", costs.ModelCostView, "model-cost"),
    route(rf"{MODEL}/predict", predictions.PredictView, "model-predict"),
    route(rf"{MODEL}/alerts", alerts.AlertListView, "model-alerts"),
    route(rf"{MODEL}/alerts/(?P<alert_id>[0-9]{{1,18}})/acknowledge", alerts.AlertAcknowledgeView, "alert-ack"),
    route(rf"{MODEL}/guardrails", guardrails.GuardrailsView, "model-guardrails"),
    route(rf"{MODEL}/guardrails/evaluations", guardrails.GuardrailEvaluationListView, "guardrail-evaluations"),
    route(rf"{MODEL}/guardrails/evaluate", guardrails.GuardrailEvaluateView, "guardrail-evaluate"),
    route(rf"{MODEL}/experiments", experiments.ExperimentListView, "experiment-list"),
    route(EXPERIMENT, experiments.ExperimentDetailView, "experiment-detail"),
    route(rf"{EXPERIMENT}/stop", experiments.ExperimentStopView, "experiment-stop"),
    route(rf"{EXPERIMENT}/promote", experiments.ExperimentPromoteView, "experiment-promote"),
    route(rf"{MODEL}/fine-tune", fine_tune.FineTuneView, "fine-tune"),
    route(rf"{MODEL}/fine-tune/status", fine_tune.FineTuneStatusView, "fine-tune-status"),
    route(rf"{MODEL}/fine-tune/stop", fine_tune.FineTuneStopView, "fine-tune-stop"),
    route(rf"{MODEL}/studies", studies.StudyListView, "study-list"),
    route(r"^model-management/studies/(?P<study_id>[0-9]{1,18})", studies.StudyDetailView, "study-detail"),
    route(r"^model-management/studies/(?P<study_id>[0-9]{1,18})/stop", studies.StudyStopView, "study-stop"),
    route(r"^model-management/jobs", jobs.JobListView, "job-list"),
    route(r"^model-management/jobs/(?P<job_id>[0-9]{1,18})", jobs.JobDetailView, "job-detail"),
    route(r"^model-management/datasets", datasets.DatasetListView, "dataset-list"),
    route(
        r"^model-management/datasets/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})",
        datasets.DatasetDetailView,
        "dataset-detail",
    ),
    route(
        r"^model-management/datasets/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/bars",
        datasets.DatasetBarsView,
        "dataset-bars",
    ),
    route(r"^model-management/audit-events", audit.AuditEventListView, "audit-list"),
    route(r"^model-management/base-models", base_models.BaseModelListView, "base-model-list"),
    route(
        rf"^model-management/base-models/(?P<name>{MODEL_NAME_PATTERN})",
        base_models.BaseModelDetailView,
        "base-model-detail",
    ),
]
