from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors, services
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import ActivateResultSerializer, ModelVersionSerializer, PerformanceMetricsSerializer
from models_mgmt.selectors import active_version_of
from models_mgmt.services.errors import InvalidInput, Unavailable

from .base import ModelScopedView

NOT_COMPUTED = "not_computed"


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
    },
)


class ComparisonView(ModelScopedView):
    @extend_schema(
        summary="Versions side by side, with the best value of each metric",
        parameters=[
            OpenApiParameter(
                "versions", OpenApiTypes.STR, description="comma-separated versions; default: the 20 most recent"
            )
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
        result = selectors.model_version_comparison(request.user, name, wanted or None)
        result["versions"] = ModelVersionSerializer(result["versions"], many=True).data
        return Response(result)


MetricsSerializer = inline_serializer(
    "ModelMetrics",
    {
        "modelName": serializers.CharField(),
        "activeVersion": serializers.CharField(allow_null=True),
        "accuracy": serializers.FloatField(allow_null=True),
        "responseTime": serializers.FloatField(allow_null=True),
        "performanceMetrics": PerformanceMetricsSerializer(allow_null=True),
        "baselines": serializers.DictField(allow_null=True),
        "live": serializers.DictField(allow_null=True, help_text="live accuracy; null until monitoring computes it"),
        "drift": serializers.DictField(),
    },
)


class MetricsView(ModelScopedView):
    @extend_schema(
        summary="Performance of the active version: validation accuracy, response time, drift status",
        responses={200: MetricsSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        active = active_version_of(model)
        version_data = ModelVersionSerializer(active).data if active else None
        return Response(
            {
                "modelName": model.name,
                "activeVersion": active.version if active else None,
                "accuracy": active.accuracy if active else None,
                "responseTime": active.response_time_ms if active else None,
                "performanceMetrics": version_data["performanceMetrics"] if version_data else None,
                "baselines": active.baselines if active else None,
                # Live accuracy needs served predictions resolved against later bars (monitoring).
                "live": None,
                "drift": {"status": NOT_COMPUTED if settings.MODEL_DRIFT_DETECTION_ENABLED else "disabled"},
            }
        )


DriftSerializer = inline_serializer(
    "DriftReport",
    {
        "modelName": serializers.CharField(),
        "activeVersion": serializers.CharField(allow_null=True),
        "status": serializers.CharField(help_text="not_computed until the monitoring service has data"),
        "driftScore": serializers.FloatField(allow_null=True),
        "features": serializers.ListField(child=serializers.DictField()),
        "recommendation": serializers.CharField(allow_null=True),
        "detail": serializers.CharField(),
    },
)


class DriftView(ModelScopedView):
    @extend_schema(
        summary="Drift detection for the active version, with a recommendation",
        responses={200: DriftSerializer, **errors(404, 503)},
    )
    def get(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        if not settings.MODEL_DRIFT_DETECTION_ENABLED:
            raise Unavailable(
                "Drift detection is disabled (MODEL_DRIFT_DETECTION_ENABLED=false).", code="drift_detection_disabled"
            )
        active = active_version_of(model)
        return Response(
            {
                "modelName": model.name,
                "activeVersion": active.version if active else None,
                "status": NOT_COMPUTED,
                "driftScore": None,
                "features": [],
                "recommendation": None,
                "detail": "No drift has been computed for this model yet: drift needs live bars compared with "
                "the training distribution of the active version.",
            }
        )
