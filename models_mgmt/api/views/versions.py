from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors, services
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import (
    ActivateResultSerializer,
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    version_list_data,
)
from models_mgmt.monitoring import ollama, serving

from .base import ModelScopedView


class VersionListView(generics.GenericAPIView):
    serializer_class = ModelVersionSerializer

    @extend_schema(
        summary="Versions of a model, newest first", responses={200: ModelVersionSerializer(many=True), **errors(404)}
    )
    def get(self, request: Request, name: str) -> Response:
        page = self.paginate_queryset(selectors.model_version_rows(request.user, name)) or []
        return self.get_paginated_response(version_list_data(page))  # ModelVersionSerializer's output


class VersionDetailView(ModelScopedView):
    @extend_schema(
        summary="One version with its metrics, baselines, backtest, metadata and its lineage's cost",
        responses={200: ModelVersionDetailSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str, version: str) -> Response:
        return Response(ModelVersionDetailSerializer(selectors.model_version_get(request.user, name, version)).data)


class VersionActivateView(ModelScopedView):
    @extend_schema(
        summary="Activate a version; the previously active one becomes deprecated (also used to roll back)",
        request=None,
        responses={200: ActivateResultSerializer, **errors(403, 404, 409, 503)},
    )
    def post(self, request: Request, name: str, version: str) -> Response:
        model = self.get_ai_model(name)
        # llm-lora with OLLAMA_URL: the adapter goes to Ollama first, outside the activation's transaction.
        delivery = ollama.activation_delivery(actor=request.user, model=model, version=version)
        activated = services.model_version_activate(actor=request.user, model=model, version=version, delivery=delivery)
        # Warm this process's serving session now (other processes swap on their next request: every
        # predict reads the active version from the database).
        serving.preload(model.pk, activated.version, activated.checksum, activated.artifact_path)
        return Response({"modelName": model.name, "activeVersion": ModelVersionSerializer(activated).data})
