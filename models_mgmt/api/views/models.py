from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors, services
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import (
    AccessResultSerializer,
    AccessSerializer,
    AIModelCreateSerializer,
    AIModelDetailSerializer,
    AIModelSerializer,
    AIModelUpdateSerializer,
    ai_model_detail_data,
    ai_model_list_data,
)
from models_mgmt.errors import InvalidInput

from .base import ModelScopedView


class ModelListView(generics.GenericAPIView):
    serializer_class = AIModelSerializer

    @extend_schema(
        summary="List the AI models the caller may view", responses={200: AIModelSerializer(many=True), **errors(404)}
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.ai_model_rows(request.user)) or []
        return self.get_paginated_response(ai_model_list_data(page))  # AIModelSerializer's output

    @extend_schema(
        summary="Register an AI model (maintainer role); the creator gets every permission on it",
        request=AIModelCreateSerializer,
        responses={201: AIModelDetailSerializer, **errors(400, 403)},
    )
    def post(self, request: Request) -> Response:
        data = AIModelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        model = services.ai_model_create(
            actor=request.user,
            name=v["name"],
            family=v["family"],
            base_model=v["baseModel"],
            description=v["description"],
            default_dataset=v["defaultDataset"],
        )
        model = selectors.ai_model_detail(request.user, model.name)
        return Response(
            AIModelDetailSerializer(model, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class ModelDetailView(ModelScopedView):
    @extend_schema(
        summary="One AI model, with the caller's permissions on it",
        responses={200: AIModelDetailSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        # AIModelDetailSerializer's output, without a serializer.
        return Response(ai_model_detail_data(selectors.ai_model_get(request.user, name), request.user))

    @extend_schema(
        summary="Change a model's description, base model or default dataset (manage permission)",
        request=AIModelUpdateSerializer,
        responses={200: AIModelDetailSerializer, **errors(400, 403, 404)},
    )
    def patch(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        data = AIModelUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.ai_model_update(actor=request.user, model=model, changes=data.changes())
        return Response(
            AIModelDetailSerializer(selectors.ai_model_detail(request.user, name), context={"request": request}).data
        )

    @extend_schema(
        summary="Delete a model and its versions (manage permission)", responses={204: None, **errors(403, 404, 409)}
    )
    def delete(self, request: Request, name: str) -> Response:
        services.ai_model_delete(actor=request.user, model=self.get_ai_model(name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelAccessView(ModelScopedView):
    @extend_schema(
        summary="Grant a user or group a role on this model, or revoke it with role null (manage permission)",
        request=AccessSerializer,
        responses={200: AccessResultSerializer, **errors(400, 403, 404)},
    )
    def post(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        data = AccessSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        grantee: User | Group | None
        if v.get("user"):
            grantee = get_user_model().objects.filter(username=v["user"], is_active=True).first()
            key, missing = "user", f"no active user '{v['user']}'"
        else:
            grantee = Group.objects.filter(name=v["group"]).first()
            key, missing = "group", f"no group '{v['group']}'"
        if grantee is None:
            raise InvalidInput("Unknown grantee.", fields={key: [missing]})
        perms = services.ai_model_access_set(actor=request.user, model=model, grantee=grantee, role=v["role"])
        return Response({key: v[key], "role": v["role"], "permissions": [p.removesuffix("_aimodel") for p in perms]})
