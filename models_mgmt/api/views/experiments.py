"""Shadow experiments: start one on a model, list them, read, stop or promote one."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.monitoring import serving
from models_mgmt.services.experiments import (
    experiment_payload,
    experiment_promote,
    experiment_start,
    experiment_stop,
)

from .base import ModelScopedView

StartSerializer = inline_serializer(
    "ExperimentStart",
    {
        "challenger": serializers.CharField(help_text="the version scored in shadow; the active one gives an A/A test"),
        "alpha": serializers.FloatField(required=False, help_text="false-win probability in (0, 0.5]; default 0.05"),
        "maxDays": serializers.IntegerField(required=False, help_text="budget in resolved days; default 250"),
        "maxPredictions": serializers.IntegerField(required=False, allow_null=True, help_text="budget in predictions"),
        "autoPromote": serializers.BooleanField(required=False, help_text="promote on challenger_better"),
    },
)
TaskSerializer = inline_serializer(
    "ExperimentTask",
    {
        "task": serializers.CharField(),
        "days": serializers.IntegerField(help_text="resolved days (same-day predictions are one observation)"),
        "predictions": serializers.IntegerField(),
        "meanDifference": serializers.FloatField(
            allow_null=True, help_text="mean of champion's minus challenger's Brier loss: > 0 challenger better"
        ),
        "lower": serializers.FloatField(allow_null=True),
        "upper": serializers.FloatField(allow_null=True),
        "side": serializers.CharField(help_text="running | challenger_better | challenger_worse"),
        "history": serializers.ListField(child=serializers.DictField(), help_text="{day, mean, lower, upper}"),
    },
)
EXPERIMENT_FIELDS: dict[str, serializers.Field] = {
    "id": serializers.IntegerField(),
    "modelName": serializers.CharField(),
    "champion": serializers.CharField(),
    "challenger": serializers.CharField(),
    "alpha": serializers.FloatField(),
    "maxDays": serializers.IntegerField(),
    "maxPredictions": serializers.IntegerField(allow_null=True),
    "autoPromote": serializers.BooleanField(),
    "state": serializers.CharField(
        help_text="running | challenger_better | challenger_worse | inconclusive | stopped | promoted"
    ),
    "reason": serializers.CharField(),
    "startedBy": serializers.CharField(allow_null=True),
    "startedAt": serializers.DateTimeField(),
    "evaluatedAt": serializers.DateTimeField(allow_null=True),
    "endedAt": serializers.DateTimeField(allow_null=True),
    "method": serializers.CharField(allow_null=True),
    "alphaPerTask": serializers.FloatField(allow_null=True),
    "tasks": serializers.ListField(child=TaskSerializer),
}
ExperimentSerializer = inline_serializer("Experiment", EXPERIMENT_FIELDS)
ExperimentListSerializer = inline_serializer("Experiment", EXPERIMENT_FIELDS, many=True)


class ExperimentListView(ModelScopedView):
    throttle_scope = "training"

    @extend_schema(
        summary="Start a shadow experiment: the challenger is scored on every prediction beside the active version",
        request=StartSerializer,
        responses={201: ExperimentSerializer, **errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        experiment = experiment_start(actor=request.user, model=model, data=request.data)
        # Load the challenger's session in this process now, so the first shadowed request does not pay it.
        challenger = experiment.challenger
        serving.preload_shadow(model.pk, challenger.version, challenger.checksum, challenger.artifact_path)
        return Response(experiment_payload(experiment), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="The model's experiments, newest first (without the per-day history)",
        responses={200: ExperimentListSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response([experiment_payload(e, history=False) for e in selectors.experiment_list(request.user, name)])


class ExperimentDetailView(APIView):
    @extend_schema(
        summary="One experiment: state, and per task the paired difference and its confidence sequence over time",
        responses={200: ExperimentSerializer, **errors(404)},
    )
    def get(self, request: Request, experiment_id: int) -> Response:
        return Response(experiment_payload(selectors.experiment_get(request.user, experiment_id)))


class ExperimentStopView(APIView):
    @extend_schema(
        summary="Stop a running experiment",
        request=None,
        responses={200: ExperimentSerializer, **errors(403, 404, 409)},
    )
    def post(self, request: Request, experiment_id: int) -> Response:
        experiment = selectors.experiment_get(request.user, experiment_id)
        stopped = experiment_stop(actor=request.user, model=experiment.model, experiment_id=experiment.pk)
        return Response(experiment_payload(stopped))


class ExperimentPromoteView(APIView):
    @extend_schema(
        summary="Activate the challenger of an experiment that found it better (audited)",
        request=None,
        responses={200: ExperimentSerializer, **errors(403, 404, 409)},
    )
    def post(self, request: Request, experiment_id: int) -> Response:
        experiment = selectors.experiment_get(request.user, experiment_id)
        promoted = experiment_promote(actor=request.user, model=experiment.model, experiment_id=experiment.pk)
        return Response(experiment_payload(promoted))
