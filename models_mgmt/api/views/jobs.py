from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import TrainingJobDetailSerializer, TrainingJobSerializer


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
