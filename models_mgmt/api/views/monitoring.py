from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import AlertSerializer, BarsAppendSerializer, PredictSerializer
from models_mgmt.choices import AlertStatus
from models_mgmt.services import monitoring

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
        "asOf": serializers.DateField(help_text="date of the last bar the prediction saw"),
        "horizon": serializers.IntegerField(help_text="bars ahead the outputs speak about"),
        "horizonDueOn": serializers.DateField(help_text="expected date of the horizon's last bar (business days)"),
        "outputs": serializers.DictField(child=OutputSerializer, help_text="signal, risk, pattern"),
        "latencyMs": serializers.FloatField(help_text="features + inference, in this process"),
        "resolvesAgainst": serializers.CharField(allow_null=True, help_text="dataset whose later bars score it"),
    },
)


class PredictView(ModelScopedView):
    @extend_schema(
        summary="Predict with the active version (signal, risk, pattern) from a window of bars or a dataset",
        request=PredictSerializer,
        responses={200: PredictionSerializer, **errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        data = PredictSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        dataset = selectors.dataset_get(request.user, v["dataset"]) if v.get("dataset") else None
        result = monitoring.prediction_make(
            actor=request.user, model=model, bars=v.get("bars"), dataset=dataset, as_of=v.get("asOf")
        )
        return Response(result)


class AlertListView(generics.GenericAPIView):
    serializer_class = AlertSerializer

    @extend_schema(
        summary="Alerts of a model, newest first",
        parameters=[OpenApiParameter("status", str, enum=AlertStatus.values, required=False)],
        responses={200: AlertSerializer(many=True), **errors(400, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        status = request.query_params.get("status") or None
        if status and status not in AlertStatus.values:
            from models_mgmt.services.errors import InvalidInput

            raise InvalidInput("Unknown status.", fields={"status": [f"one of {', '.join(AlertStatus.values)}"]})
        page = self.paginate_queryset(selectors.alert_list(request.user, name, status))
        return self.get_paginated_response(AlertSerializer(page, many=True).data)


class AlertAcknowledgeView(ModelScopedView):
    @extend_schema(
        summary="Acknowledge an open alert (it stays until its condition clears)",
        request=None,
        responses={200: AlertSerializer, **errors(403, 404, 409)},
    )
    def post(self, request: Request, name: str, alert_id: str) -> Response:
        model = self.get_ai_model(name)
        alert = monitoring.alert_acknowledge(actor=request.user, model=model, alert_id=int(alert_id))
        return Response(AlertSerializer(alert).data)


BarsAppendResultSerializer = inline_serializer(
    "BarsAppended",
    {
        "dataset": serializers.CharField(),
        "added": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(help_text="dates already stored with the same values"),
        "barCount": serializers.IntegerField(),
        "lastDate": serializers.DateField(allow_null=True),
    },
)


class DatasetBarsView(generics.GenericAPIView):
    serializer_class = BarsAppendSerializer  # also what OPTIONS describes (without it OPTIONS was a 500)

    @extend_schema(
        summary="Append new bars to a dataset (idempotent per date; change_dataset permission)",
        request=BarsAppendSerializer,
        responses={200: BarsAppendResultSerializer, **errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, name: str) -> Response:
        dataset = selectors.dataset_get(request.user, name)
        data = BarsAppendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            monitoring.dataset_bars_append(actor=request.user, dataset=dataset, bars=data.validated_data["bars"])
        )
