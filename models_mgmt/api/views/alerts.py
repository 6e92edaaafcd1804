from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import AlertSerializer
from models_mgmt.choices import AlertStatus
from models_mgmt.errors import InvalidInput
from models_mgmt.monitoring.alerts import alert_acknowledge

from .base import ModelScopedView


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
        alert = alert_acknowledge(actor=request.user, model=model, alert_id=int(alert_id))
        return Response(AlertSerializer(alert).data)
