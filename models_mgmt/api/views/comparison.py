from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import ModelVersionSerializer
from models_mgmt.errors import InvalidInput
from models_mgmt.monitoring import comparison

from .base import ModelScopedView
from .params import WINDOW_PARAMS, window_params

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
                "best": serializers.CharField(allow_null=True, help_text="null when values tie or cannot be compared"),
                "notes": serializers.DictField(
                    child=serializers.CharField(),
                    help_text="per version, why its value is left out; '*': why no best value is given",
                ),
            },
            many=True,
        ),
        "heldOut": serializers.DictField(
            help_text="every version re-evaluated on one common held-out window: window, results (metrics, "
            "backtest, seenInTraining), deltas against the reference (active) version"
        ),
    },
)


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
        if len(wanted) > comparison.MAX_COMPARED_VERSIONS:
            raise InvalidInput(
                "Too many versions.", fields={"versions": [f"compare at most {comparison.MAX_COMPARED_VERSIONS}"]}
            )
        start, end = window_params(request)
        result = comparison.model_version_comparison(request.user, name, wanted or None, start=start, end=end)
        result["versions"] = ModelVersionSerializer(result["versions"], many=True).data
        return Response(result)
