from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors, services
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import FineTuningConfigSerializer, TrainingJobDetailSerializer, TrainingJobSerializer

from .base import ModelScopedView


class FineTuneView(ModelScopedView):
    throttle_scope = "training"

    @extend_schema(
        summary="Start fine-tuning with a (partial) FineTuningConfig; defaults fill the rest",
        request=FineTuningConfigSerializer,
        responses={202: TrainingJobSerializer, **errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        data = FineTuningConfigSerializer(data=request.data, context={"model": model})
        data.is_valid(raise_exception=True)
        resolved = data.validated_data["resolved"]
        job = services.training_job_start(
            actor=request.user,
            model=model,
            config=resolved.config,
            dataset=resolved.dataset,
            base_version=resolved.base_version,
        )
        # The service returns the job with its relations loaded: no second (permission-filtered) read.
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class FineTuneStatusView(ModelScopedView):
    @extend_schema(
        summary="The model's current or latest training job",
        responses={200: TrainingJobDetailSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(TrainingJobDetailSerializer(selectors.training_job_latest(request.user, name)).data)


class FineTuneStopView(ModelScopedView):
    @extend_schema(
        summary="Stop the running job: queued stops at once, running goes to stopping until the worker stops",
        request=None,
        responses={200: TrainingJobSerializer, **errors(403, 404, 409)},
    )
    def post(self, request: Request, name: str) -> Response:
        job = services.training_job_stop(actor=request.user, model=self.get_ai_model(name))
        return Response(TrainingJobSerializer(job).data)
