from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from models_mgmt.api.errors import errors
from models_mgmt.health import health_report

HealthSerializer = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "degraded"]),
        "components": serializers.DictField(required=False, help_text="only for authenticated callers"),
    },
)


class HealthView(APIView):
    """Anyone may ask whether the service is up; only signed-in users see the components."""

    permission_classes = [AllowAny]

    @extend_schema(
        summary="Database, broker, worker and channel-layer state",
        responses={200: HealthSerializer, 503: HealthSerializer, **errors()},  # 401: a bad token is refused
    )
    def get(self, request: Request) -> Response:
        report = health_report()
        code = 200 if report["status"] == "ok" else 503
        if not request.user.is_authenticated:
            report = {"status": report["status"]}
        return Response(report, status=code)


PingSerializer = inline_serializer("Ping", {"ok": serializers.BooleanField(), "user": serializers.CharField()})


class PingView(APIView):
    """An authenticated answer that reads nothing beyond authentication: the stack's floor.

    It goes through the same server, middleware, authentication and throttles as every endpoint,
    so `bench/api_load.py` reports each operation as a ratio to it; clients may use it to check
    a token.
    """

    @extend_schema(
        summary="Check a token: who the request is authenticated as", responses={200: PingSerializer, **errors()}
    )
    def get(self, request: Request) -> Response:
        return Response({"ok": True, "user": request.user.get_username()})


TokenPairSerializer = inline_serializer(
    "TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()}
)


class TokenObtainView(TokenObtainPairView):
    throttle_scope = "auth"

    @extend_schema(
        summary="Obtain an access and refresh token pair", responses={200: TokenPairSerializer, **errors(400, 401)}
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        return super().post(request, *args, **kwargs)


class TokenRefreshRotatingView(TokenRefreshView):
    throttle_scope = "auth"

    @extend_schema(
        summary="Exchange a refresh token for a new pair; the old refresh token is blacklisted",
        responses={200: TokenPairSerializer, **errors(400, 401)},
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        return super().post(request, *args, **kwargs)


class TokenRevokeView(TokenBlacklistView):
    throttle_scope = "auth"

    @extend_schema(
        summary="Blacklist a refresh token (sign out)",
        responses={200: inline_serializer("Empty", {}), **errors(400, 401)},
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        return super().post(request, *args, **kwargs)


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI with the site's Cross-Origin-Opener-Policy. drf-spectacular relaxes it to
    `unsafe-none` for Swagger's OAuth2 pop-up flow, which this API (JWT, sessions) does not use."""

    @extend_schema(exclude=True)  # a page, not an API operation (as in the parent class)
    def get(self, request: Request, *args, **kwargs) -> Response:
        response = super().get(request, *args, **kwargs)
        response["Cross-Origin-Opener-Policy"] = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
        return response
