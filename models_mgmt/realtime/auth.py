"""Websocket authentication: a bearer token in the handshake headers, or the browser's session.

A token is never accepted in the URL (it would end up in logs). A connection that carries no
`Authorization` header but an `Origin` is a browser's: it must come from an allowed origin (no
cross-site websocket hijacking) and authenticates with the session cookie. One with neither is a
client without credentials: it reaches the consumer as anonymous and is closed with 4401, as
documented, instead of being refused at the handshake (browsers always send `Origin`, so no
session cookie is read for it).
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError


def bearer_token(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin1").partition(" ")
            return token.strip() if kind.lower() == "bearer" else ""
    return None


def has_origin(scope: dict[str, Any]) -> bool:
    return any(name == b"origin" for name, _ in scope.get("headers", []))


@database_sync_to_async
def user_for_token(token: str) -> tuple[Any, int | None]:
    """(user, expiry as a unix time) for a valid access token; (AnonymousUser, None) otherwise."""
    auth = JWTAuthentication()
    try:
        validated = auth.get_validated_token(token.encode())
        user = auth.get_user(validated)
    except (InvalidToken, TokenError, AuthenticationFailed):
        return AnonymousUser(), None
    if not user.is_active:
        return AnonymousUser(), None
    return user, int(validated["exp"])


class BearerOrSessionAuth:
    def __init__(self, inner: Any):
        self.inner = inner
        self.browser = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = bearer_token(scope)
        if token is None:
            if has_origin(scope):
                return await self.browser(scope, receive, send)
            return await self.inner({**scope, "user": AnonymousUser(), "token_exp": None}, receive, send)
        user, expires = await user_for_token(token) if token else (AnonymousUser(), None)
        return await self.inner({**scope, "user": user, "token_exp": expires}, receive, send)
