from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt.api.errors import errors
from models_mgmt.errors import Unavailable
from models_mgmt.monitoring.drift import model_drift_report

from .base import ModelScopedView
from .params import WINDOW_PARAMS, window_params

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
        "cache": serializers.CharField(
            required=False,
            help_text="hit: the data and prediction sections came from the cache (same version, window and bars)",
        ),
        "dataDrift": serializers.DictField(required=False, help_text="verdict, score, drifted, warned, shifted"),
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
        start, end = window_params(request)
        report = model_drift_report(
            request.user, name, dataset_name=request.query_params.get("dataset") or None, start=start, end=end
        )
        report.pop("conditions", None)
        return Response(report)
