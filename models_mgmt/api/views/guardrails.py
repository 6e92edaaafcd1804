"""Guardrail policy of a model, its evaluations, and running one now."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.monitoring.guardrails import (
    evaluation_payload,
    guardrail_evaluate_now,
    guardrails_of,
    model_guardrails,
)
from models_mgmt.services.guardrails import guardrail_policy_update

from .base import ModelScopedView

PolicySerializer = inline_serializer(
    "GuardrailPolicy",
    {
        "enabled": serializers.BooleanField(),
        "accuracyTasks": serializers.ListField(child=serializers.CharField(), help_text="signal, risk, pattern"),
        "accuracyMargin": serializers.FloatField(help_text="allowed drop below validation accuracy, 0..0.5"),
        "accuracyMinResolved": serializers.IntegerField(help_text="fewer resolved predictions: inconclusive"),
        "accuracyAlpha": serializers.FloatField(help_text="significance, split over the tasks"),
        "latencyP95Ms": serializers.FloatField(),
        "latencyWindowMinutes": serializers.IntegerField(),
        "latencyMinRequests": serializers.IntegerField(help_text="a window with fewer requests is not counted"),
        "latencyM": serializers.IntegerField(help_text="breached windows ..."),
        "latencyN": serializers.IntegerField(help_text="... of the last N counted windows"),
        "cooldownHours": serializers.FloatField(),
        "cooldownUntil": serializers.DateTimeField(allow_null=True, help_text="PUT null ends the cooldown"),
        "updatedAt": serializers.DateTimeField(allow_null=True, read_only=True),
        "updatedBy": serializers.CharField(allow_null=True, read_only=True),
    },
)
GuardrailsSerializer = inline_serializer(
    "Guardrails",
    {
        "modelName": serializers.CharField(),
        "stored": serializers.BooleanField(help_text="false: no policy stored, the defaults are shown (off)"),
        "policy": PolicySerializer,
        "activeVersion": serializers.CharField(allow_null=True),
        "cooldownActive": serializers.BooleanField(),
        "rolledBackVersions": serializers.ListField(child=serializers.CharField()),
        "rollbacks": serializers.ListField(child=serializers.DictField()),
        "lastEvaluation": serializers.DictField(allow_null=True),
        "canEdit": serializers.BooleanField(),
    },
)


class EvaluationSerializer(serializers.Serializer):
    """Documents the rows (built by `evaluation_payload`)."""

    id = serializers.IntegerField()
    createdAt = serializers.DateTimeField()
    version = serializers.CharField(allow_null=True)
    trigger = serializers.CharField(help_text="schedule | bars | manual")
    verdict = serializers.CharField(help_text="ok | breach | inconclusive")
    action = serializers.CharField(help_text="none | rolled_back | alert_only | cooldown")
    rolledBackTo = serializers.CharField(allow_null=True)
    alertId = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()
    checks = serializers.DictField(help_text="accuracy, latency (measured, bound, count, windows), evidence")


class GuardrailsView(ModelScopedView):
    @extend_schema(
        summary="The model's guardrail policy, cooldown and rollbacks",
        responses={200: GuardrailsSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(model_guardrails(request.user, name))

    @extend_schema(
        summary="Change the guardrail policy (fields left out keep their value)",
        request=PolicySerializer,
        responses={200: GuardrailsSerializer, **errors(400, 403, 404)},
    )
    def put(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        guardrail_policy_update(actor=request.user, model=model, changes=request.data)
        return Response({**guardrails_of(model), "canEdit": True})


class GuardrailEvaluationListView(generics.GenericAPIView):
    serializer_class = EvaluationSerializer

    @extend_schema(
        summary="Guardrail evaluations of a model, newest first",
        responses={200: EvaluationSerializer(many=True), **errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        page = self.paginate_queryset(selectors.guardrail_evaluation_list(request.user, name)) or []
        return self.get_paginated_response([evaluation_payload(e) for e in page])


class GuardrailEvaluateView(ModelScopedView):
    @extend_schema(
        summary="Evaluate the guardrail policy now (it acts as the schedule would)",
        request=None,
        responses={200: EvaluationSerializer, **errors(403, 404, 503)},
    )
    def post(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        return Response(evaluation_payload(guardrail_evaluate_now(actor=request.user, model=model)))
