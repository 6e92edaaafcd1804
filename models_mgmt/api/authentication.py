"""Bearer authentication that tells an expired access token from an invalid one.

simplejwt answers both with `token_not_valid` ("Given token not valid for any token type"); a client
seeing `token_expired` knows to refresh instead of signing in again. Only a token with the server's
signature (PyJWT checks it before the expiry) and the access type counts as expired, so a forged or
misused one still gets nothing but `token_not_valid`.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import ExpiredTokenError, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token


class AccessTokenExpired(InvalidToken):
    default_detail = _("The access token has expired; get a new one from /api/auth/token/refresh/.")
    default_code = "token_expired"


class BearerAuthentication(JWTAuthentication):
    def get_validated_token(self, raw_token: bytes) -> Token:
        try:
            return super().get_validated_token(raw_token)
        except InvalidToken:
            for token_class in api_settings.AUTH_TOKEN_CLASSES:
                try:
                    token_class(raw_token)
                except ExpiredTokenError as e:
                    claims = token_class(raw_token, verify=False).payload  # signed by us, only too old
                    if claims.get(api_settings.TOKEN_TYPE_CLAIM) == token_class.token_type:
                        raise AccessTokenExpired() from e
                except TokenError:
                    continue
            raise


class BearerScheme(SimpleJWTScheme):
    """The OpenAPI security scheme: simplejwt's (drf-spectacular matches the exact class)."""

    target_class = "models_mgmt.api.authentication.BearerAuthentication"
