from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import BaseModelRegisterSerializer, BaseModelSerializer
from models_mgmt.services.base_models import base_model_register


class BaseModelListView(generics.GenericAPIView):
    serializer_class = BaseModelSerializer

    @extend_schema(
        summary="Registered local base models that llm-lora models fine-tune",
        responses={200: BaseModelSerializer(many=True), **errors(404)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.base_model_list(request.user))
        return self.get_paginated_response(BaseModelSerializer(page, many=True).data)

    @extend_schema(
        summary="Register a Hugging Face directory on the server as a base model (maintainer role); "
        "checked (files, architecture) and its sha256s recorded; nothing is downloaded",
        request=BaseModelRegisterSerializer,
        responses={201: BaseModelSerializer, **errors(400, 403)},
    )
    def post(self, request: Request) -> Response:
        data = BaseModelRegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        base = base_model_register(
            actor=request.user, name=v["name"], path=v["path"], ollama_tag=v["ollamaTag"], description=v["description"]
        )
        return Response(BaseModelSerializer(base).data, status=status.HTTP_201_CREATED)


class BaseModelDetailView(generics.GenericAPIView):
    @extend_schema(summary="One registered base model", responses={200: BaseModelSerializer, **errors(404)})
    def get(self, request: Request, name: str) -> Response:
        return Response(BaseModelSerializer(selectors.base_model_get(request.user, name)).data)
