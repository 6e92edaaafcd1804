from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import PredictSerializer
from models_mgmt.monitoring.predictions import prediction_make

from .base import ModelScopedView

OutputSerializer = inline_serializer(
    "PredictionOutput", {"probability": serializers.FloatField(), "prediction": serializers.CharField()}
)
PredictionSerializer = inline_serializer(
    "Prediction",
    {
        "predictionId": serializers.IntegerField(),
        "modelName": serializers.CharField(),
        "version": serializers.CharField(help_text="the version that served this prediction"),
        "asOf": serializers.CharField(
            help_text="the last bar the prediction saw: YYYY-MM-DD (daily bars) or ISO 8601 UTC (intraday)"
        ),
        "horizon": serializers.IntegerField(help_text="bars ahead the outputs speak about"),
        "horizonDueOn": serializers.CharField(
            help_text="earliest time of the horizon's last bar: business days for daily bars, bar lengths for intraday"
        ),
        "outputs": serializers.DictField(child=OutputSerializer, help_text="signal, risk, pattern"),
        "latencyMs": serializers.FloatField(help_text="features + inference, in this process"),
        "resolvesAgainst": serializers.CharField(allow_null=True, help_text="dataset whose later bars score it"),
        "shadow": serializers.DictField(
            required=False,
            allow_null=True,
            help_text="only with shadow=true (or ?shadow=1): {experimentId, version, outputs} of the running "
            "experiment's challenger, null when none runs",
        ),
    },
)


class PredictView(ModelScopedView):
    @extend_schema(
        summary="Predict with the active version (signal, risk, pattern) from a window of bars or a dataset",
        request=PredictSerializer,
        responses={200: PredictionSerializer, **errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, name: str) -> Response:
        # One permission-filtered lookup brings the model, its active version and datasets; it is
        # the permission check, so nothing below asks guardian again (a constant few queries).
        model = selectors.ai_model_to_serve(request.user, name)
        data = PredictSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        dataset = selectors.dataset_get(request.user, v["dataset"]) if v.get("dataset") else None
        show_shadow = v.get("shadow", False) or request.query_params.get("shadow") in ("1", "true")
        result = prediction_make(
            model=model, bars=v.get("bars"), dataset=dataset, as_of=v.get("asOf"), show_shadow=show_shadow
        )
        return Response(result)
