from __future__ import annotations

import datetime as dt
import re

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors, services
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import ActivateResultSerializer, ModelVersionSerializer, PerformanceMetricsSerializer
from models_mgmt.services.errors import InvalidInput, Unavailable

from .base import ModelScopedView


class VersionListView(generics.GenericAPIView):
    serializer_class = ModelVersionSerializer

    @extend_schema(
        summary="Versions of a model, newest first", responses={200: ModelVersionSerializer(many=True), **errors(404)}
    )
    def get(self, request: Request, name: str) -> Response:
        page = self.paginate_queryset(selectors.model_version_list(request.user, name))
        return self.get_paginated_response(ModelVersionSerializer(page, many=True).data)


class VersionDetailView(ModelScopedView):
    @extend_schema(
        summary="One version with its metrics, baselines, backtest and metadata",
        responses={200: ModelVersionSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str, version: str) -> Response:
        return Response(ModelVersionSerializer(selectors.model_version_get(request.user, name, version)).data)


class VersionActivateView(ModelScopedView):
    @extend_schema(
        summary="Activate a version; the previously active one becomes deprecated (also used to roll back)",
        request=None,
        responses={200: ActivateResultSerializer, **errors(403, 404, 409)},
    )
    def post(self, request: Request, name: str, version: str) -> Response:
        model = self.get_ai_model(name)
        activated = services.model_version_activate(actor=request.user, model=model, version=version)
        return Response({"modelName": model.name, "activeVersion": ModelVersionSerializer(activated).data})


ComparisonSerializer = inline_serializer(
    "VersionComparison",
    {
        "modelName": serializers.CharField(),
        "versions": ModelVersionSerializer(many=True),
        "metrics": inline_serializer(
            "ComparedMetric",
            {
                "metric": serializers.CharField(),
                "higherIsBetter": serializers.BooleanField(),
                "values": serializers.DictField(child=serializers.FloatField(allow_null=True)),
                "best": serializers.CharField(allow_null=True),
            },
            many=True,
        ),
        "heldOut": serializers.DictField(
            help_text="every version re-evaluated on one common held-out window: window, results (metrics, "
            "backtest, seenInTraining), deltas against the reference (active) version"
        ),
    },
)


def _date_param(request: Request, key: str) -> dt.date | None:
    raw = request.query_params.get(key)
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput("Invalid date.", fields={key: ["use YYYY-MM-DD"]}) from exc


def _window_params(request: Request) -> tuple[dt.date | None, dt.date | None]:
    start, end = _date_param(request, "start"), _date_param(request, "end")
    if start and end and start >= end:
        raise InvalidInput("Invalid window.", fields={"end": ["must be after start"]})
    return start, end


WINDOW_PARAMS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="first bar of the window"),
    OpenApiParameter("end", OpenApiTypes.DATE, description="last bar of the window"),
]


class ComparisonView(ModelScopedView):
    @extend_schema(
        summary="Versions side by side: stored metrics, and all re-evaluated on one held-out window",
        parameters=[
            OpenApiParameter(
                "versions", OpenApiTypes.STR, description="comma-separated versions; default: the 20 most recent"
            ),
            *WINDOW_PARAMS,
        ],
        responses={200: ComparisonSerializer, **errors(400, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        raw = request.query_params.get("versions", "")
        wanted = [v.strip() for v in raw.split(",") if v.strip()]
        if len(wanted) > selectors.MAX_COMPARED_VERSIONS:
            raise InvalidInput(
                "Too many versions.", fields={"versions": [f"compare at most {selectors.MAX_COMPARED_VERSIONS}"]}
            )
        start, end = _window_params(request)
        result = selectors.model_version_comparison(request.user, name, wanted or None, start=start, end=end)
        result["versions"] = ModelVersionSerializer(result["versions"], many=True).data
        return Response(result)


MetricsSerializer = inline_serializer(
    "ModelMetrics",
    {
        "modelName": serializers.CharField(),
        "activeVersion": serializers.CharField(allow_null=True),
        "accuracy": serializers.FloatField(allow_null=True, help_text="validation accuracy (overallScore)"),
        "responseTime": serializers.FloatField(allow_null=True, help_text="validation-time median inference, ms"),
        "performanceMetrics": PerformanceMetricsSerializer(allow_null=True),
        "baselines": serializers.DictField(allow_null=True),
        "live": serializers.DictField(
            help_text="from the prediction ledger over the window: accuracy per task with count and 95% CI, "
            "responseTime p50/p95/p99, requests, requestsPerMinute, byVersion"
        ),
        "drift": serializers.DictField(help_text="latest stored drift report, or its status"),
    },
)
WINDOW_UNITS = {"m": 1, "h": 60, "d": 1440}
MAX_WINDOW_MINUTES = 366 * 1440


def _since(request: Request) -> dt.datetime:
    raw = (request.query_params.get("window") or "7d").strip().lower()
    match = re.fullmatch(r"([0-9]{1,6})([mhd])", raw)
    minutes = int(match.group(1)) * WINDOW_UNITS[match.group(2)] if match else 0
    if not match or not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise InvalidInput("Invalid window.", fields={"window": ["use <n>m, <n>h or <n>d, at most 366d (e.g. 24h)"]})
    return timezone.now() - dt.timedelta(minutes=minutes)


class MetricsView(ModelScopedView):
    @extend_schema(
        summary="The active version's validation metrics beside its live ones over a window",
        parameters=[OpenApiParameter("window", OpenApiTypes.STR, description="e.g. 60m, 24h, 7d (default), 30d")],
        responses={200: MetricsSerializer, **errors(400, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        since = _since(request)
        found = selectors.model_live_metrics(request.user, name, since)
        model, active = found["model"], found["active"]
        version_data = ModelVersionSerializer(active).data if active else None
        if not settings.MODEL_DRIFT_DETECTION_ENABLED:
            drift = {"status": "disabled"}
        else:
            latest = model.drift_reports.order_by("-created_at", "-id").first()
            drift = (
                {"status": "computed", "verdict": latest.verdict, "driftScore": latest.drift_score,
                 "recommendation": latest.recommendation, "computedAt": latest.created_at.isoformat()}
                if latest
                else {"status": "not_checked_yet", "detail": "no scheduled drift check has run; GET drift computes one"}
            )  # fmt: skip
        return Response(
            {
                "modelName": model.name,
                "activeVersion": active.version if active else None,
                "accuracy": active.accuracy if active else None,
                "responseTime": active.response_time_ms if active else None,
                "performanceMetrics": version_data["performanceMetrics"] if version_data else None,
                "baselines": active.baselines if active else None,
                "live": found["live"],
                "drift": drift,
            }
        )


DriftSerializer = inline_serializer(
    "DriftReport",
    {
        "modelName": serializers.CharField(),
        "activeVersion": serializers.CharField(allow_null=True),
        "status": serializers.CharField(help_text="computed | insufficient_data | no_active_version"),
        "verdict": serializers.CharField(help_text="stable | warning | drift | insufficient_data"),
        "driftScore": serializers.FloatField(allow_null=True, help_text="share of features that drifted"),
        "recommendation": serializers.CharField(allow_null=True, help_text="none | monitor | retrain | rollback to vX"),
        "reasons": serializers.ListField(child=serializers.CharField()),
        "features": serializers.ListField(child=serializers.DictField(), help_text="psi, ks, wasserstein per feature"),
        "predictionDrift": serializers.DictField(required=False),
        "performanceDrift": serializers.DictField(required=False),
        "reference": serializers.DictField(required=False),
        "window": serializers.DictField(required=False),
        "thresholds": serializers.DictField(),
        "history": serializers.ListField(child=serializers.DictField()),
        "detail": serializers.CharField(),
    },
)


class DriftView(ModelScopedView):
    @extend_schema(
        summary="Data, prediction and performance drift of the active version, a verdict and a recommendation",
        parameters=[
            OpenApiParameter("dataset", OpenApiTypes.STR, description="default: the model's dataset"),
            *WINDOW_PARAMS,
        ],
        responses={200: DriftSerializer, **errors(400, 404, 503)},
    )
    def get(self, request: Request, name: str) -> Response:
        self.get_ai_model(name)
        if not settings.MODEL_DRIFT_DETECTION_ENABLED:
            raise Unavailable(
                "Drift detection is disabled (MODEL_DRIFT_DETECTION_ENABLED=false).", code="drift_detection_disabled"
            )
        start, end = _window_params(request)
        report = selectors.model_drift_report(
            request.user, name, dataset_name=request.query_params.get("dataset") or None, start=start, end=end
        )
        report.pop("conditions", None)
        return Response(report)
