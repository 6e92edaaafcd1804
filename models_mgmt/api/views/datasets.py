from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors, services
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import (
    BarsAppendSerializer,
    DatasetDetailSerializer,
    DatasetSerializer,
    DatasetUploadSerializer,
)


class DatasetListView(generics.GenericAPIView):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser]

    @extend_schema(summary="Datasets of market bars", responses={200: DatasetSerializer(many=True), **errors(403, 404)})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.dataset_list(request.user))
        return self.get_paginated_response(DatasetSerializer(page, many=True).data)

    @extend_schema(
        summary="Upload a CSV of OHLCV bars (maintainer role); a broken file stores nothing, names rows at fault",
        request={"multipart/form-data": DatasetUploadSerializer},
        responses={201: DatasetSerializer, **errors(400, 403)},
    )
    def post(self, request: Request) -> Response:
        data = DatasetUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        upload = v["file"]
        dataset = services.dataset_create_from_csv(
            actor=request.user,
            name=v["name"],
            symbol=v["symbol"],
            timeframe=v["timeframe"],
            description=v["description"],
            # One byte past the limit is enough for the service to refuse an oversized file.
            data=upload.read(settings.CSV_UPLOAD_MAX_BYTES + 1),
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(generics.GenericAPIView):
    @extend_schema(
        summary="One dataset with its date range and latest bars",
        responses={200: DatasetDetailSerializer, **errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(DatasetDetailSerializer(selectors.dataset_get(request.user, name)).data)


BarsAppendResultSerializer = inline_serializer(
    "BarsAppended",
    {
        "dataset": serializers.CharField(),
        "added": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(help_text="bars already stored with the same values"),
        "barCount": serializers.IntegerField(),
        "lastDate": serializers.DateField(allow_null=True, help_text="UTC date of the last bar"),
        "lastTimestamp": serializers.CharField(allow_null=True, help_text="the last bar, ISO 8601 UTC"),
    },
)


class DatasetBarsView(generics.GenericAPIView):
    serializer_class = BarsAppendSerializer  # also what OPTIONS describes (without it OPTIONS was a 500)

    @extend_schema(
        summary="Append new bars to a dataset (idempotent per bar time; change_dataset permission)",
        request=BarsAppendSerializer,
        responses={200: BarsAppendResultSerializer, **errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, name: str) -> Response:
        dataset = selectors.dataset_get(request.user, name)
        data = BarsAppendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            services.dataset_bars_append(actor=request.user, dataset=dataset, bars=data.validated_data["bars"])
        )
