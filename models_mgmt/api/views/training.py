from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
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
        v = data.validated_data
        job = services.training_job_start(
            actor=request.user,
            model=model,
            config=v["config"],
            dataset=v["dataset_obj"],
            base_version=v["base_version"],
        )
        return Response(
            TrainingJobSerializer(selectors.training_job_get(request.user, job.pk)).data,
            status=status.HTTP_202_ACCEPTED,
        )


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
        return Response(TrainingJobSerializer(selectors.training_job_get(request.user, job.pk)).data)


class JobListView(generics.GenericAPIView):
    serializer_class = TrainingJobSerializer

    @extend_schema(
        summary="Training jobs of the models the caller may view, newest first",
        responses={200: TrainingJobSerializer(many=True), **errors(404)},
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.training_job_list(request.user)
        model_name = request.query_params.get("model")
        if model_name:
            queryset = queryset.filter(model__name=model_name)
        job_status = request.query_params.get("status")
        if job_status:
            queryset = queryset.filter(status=job_status)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(TrainingJobSerializer(page, many=True).data)


class JobDetailView(generics.GenericAPIView):
    @extend_schema(
        summary="One training job with its per-epoch history",
        responses={200: TrainingJobDetailSerializer, **errors(404)},
    )
    def get(self, request: Request, job_id: int) -> Response:
        return Response(TrainingJobDetailSerializer(selectors.training_job_get(request.user, job_id)).data)
