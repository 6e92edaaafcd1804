"""OpenAPI hooks: document the seed's paths exactly (no trailing slash)."""

from __future__ import annotations

from typing import Any


def seed_paths(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    prefix = "/api/model-management/"
    return [
        (path.rstrip("/") if path.startswith(prefix) else path, regex, method, callback)
        for path, regex, method, callback in endpoints
    ]


def unsupported_media_type(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Document 415 wherever a request body is read: a body in a media type the operation does not
    parse (or an unparseable multipart body) is answered 415 with the common error body."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}, "description": ""}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["responses"].setdefault("415", error)
    return result
