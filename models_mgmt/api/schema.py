"""OpenAPI hooks: document the seed's paths exactly (no trailing slash)."""

from __future__ import annotations

from typing import Any


def seed_paths(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    prefix = "/api/model-management/"
    return [
        (path.rstrip("/") if path.startswith(prefix) else path, regex, method, callback)
        for path, regex, method, callback in endpoints
    ]
