"""One error body for every failure: {"detail", "code", "fields"?}.

A 400 names each offending field in `fields`; the status says which kind of failure it is.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from models_mgmt.errors import ServiceError


class ErrorSerializer(serializers.Serializer):
    """Every error response has this shape."""

    detail = serializers.CharField()
    code = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # the wire name clashes with Serializer.fields
        required=False, help_text="Per-field reasons (400 only)."
    )


def _first_code(codes: Any) -> str:
    if isinstance(codes, dict):
        for value in codes.values():
            return _first_code(value)
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return str(codes) if codes else "invalid"


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {"detail": exc.message, "code": exc.code}
        if exc.fields:
            body["fields"] = exc.fields
        return Response(body, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        data = exc.detail if isinstance(exc.detail, dict) else {"nonFieldErrors": exc.detail}
        response.data = {"detail": "Invalid input.", "code": "invalid", "fields": data}
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        if isinstance(detail, dict) and "detail" in detail:  # simplejwt nests its message
            detail = detail["detail"]
        response.data = {"detail": str(detail), "code": _first_code(exc.get_codes())}
    return response


def errors(*codes: int) -> dict[int, type[ErrorSerializer]]:
    """The error responses an endpoint documents; 401 and 429 apply to all (a paginated list adds 404: no such page)."""
    return {c: ErrorSerializer for c in sorted({401, 429, *codes})}


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: what Django refuses before any view runs (a body over DATA_UPLOAD_MAX_MEMORY_SIZE,
    too many form fields, a Host not in ALLOWED_HOSTS) answers the JSON error body under /api/."""
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            body = {"detail": "The request body is too large.", "code": "request_too_large"}
        elif isinstance(exception, TooManyFieldsSent):
            body = {"detail": "The request has too many form fields.", "code": "too_many_fields"}
        else:
            body = {"detail": "Bad request.", "code": "bad_request"}
        return JsonResponse(body, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler403: a PermissionDenied raised outside DRF (middleware) answers the JSON error body under /api/."""
    if _is_api(request):
        return JsonResponse(
            {"detail": "You do not have permission to perform this action.", "code": "permission_denied"}, status=403
        )
    return defaults.permission_denied(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: a URL under /api/ that matches no route (e.g. a name outside the allowed
    characters) answers the common JSON error body, like every other API error; pages keep Django's."""
    if _is_api(request):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the common JSON error body under /api/ (no HTML page an API client cannot read)."""
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)
