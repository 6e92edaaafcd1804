from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import ModelVersionSerializer, PerformanceMetricsSerializer
from models_mgmt.monitoring.live import model_live_metrics

from .base import ModelScopedView
from .params import since_param

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


class MetricsView(ModelScopedView):
    @extend_schema(
        summary="The active version's validation metrics beside its live ones over a window",
        parameters=[OpenApiParameter("window", OpenApiTypes.STR, description="e.g. 60m, 24h, 7d (default), 30d")],
        responses={200: MetricsSerializer, **errors(400, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        since = since_param(request)
        found = model_live_metrics(request.user, name, since)
        model, active = found["model"], found["active"]
        version_data = ModelVersionSerializer(active).data if active else None
        drift: dict[str, Any]
        if not settings.MODEL_DRIFT_DETECTION_ENABLED:
            drift = {"status": "disabled"}
        else:
            latest = model.drift_reports.select_related("version").order_by("-created_at", "-id").first()
            drift = (
                {"status": "computed", "verdict": latest.verdict, "driftScore": latest.drift_score,
                 "recommendation": latest.recommendation, "computedAt": latest.created_at.isoformat(),
                 "version": latest.version.version if latest.version is not None else None}
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
