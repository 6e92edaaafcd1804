"""JWT misuse on every model-scoped endpoint and both websocket feeds (tests/api/test_auth.py
checks the same tokens against one read; here every action too, and nothing changes).

Each forged token carries the OWNER's claims: only the signature, algorithm, type or expiry is wrong.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from datetime import timedelta

import jwt
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from techanal.asgi import application
from tests.api.test_permission_matrix import ENDPOINTS, call

from .test_object_access import assert_untouched

COLLECTIONS = ["/api/model-management/models", "/api/model-management/jobs", "/api/model-management/audit-events"]


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(user) -> dict:
    now = int(time.time())
    return {"token_type": "access", "exp": now + 600, "iat": now, "jti": uuid.uuid4().hex, "user_id": str(user.pk)}


def forged(kind: str, user) -> str:
    key = settings.SIMPLE_JWT["SIGNING_KEY"]
    if kind == "alg-none":
        return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims(user))}."
    if kind == "wrong-signature":
        return jwt.encode(claims(user), "not-the-servers-key-0123456789-abcdefghijklmnop", algorithm="HS256")
    if kind == "other-algorithm":  # the right key, but not the configured HS256
        with warnings.catch_warnings():  # the test key is shorter than HS512 recommends
            warnings.simplefilter("ignore")
            return jwt.encode(claims(user), key, algorithm="HS512")
    if kind == "expired":
        token = AccessToken.for_user(user)
        token.set_exp(lifetime=-timedelta(seconds=1))
        return str(token)
    if kind == "refresh-as-access":
        return str(RefreshToken.for_user(user))
    if kind == "truncated-signature":
        return str(AccessToken.for_user(user))[:-4]
    raise AssertionError(kind)


KINDS = ["alg-none", "wrong-signature", "other-algorithm", "expired", "refresh-as-access", "truncated-signature"]


def with_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_the_control_token_is_accepted(owners):
    alice, _ = owners
    token = jwt.encode(claims(alice.user), settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")
    assert with_token(token).get(alice.base).status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_misused_token_is_refused_on_every_endpoint_and_changes_nothing(owners, endpoint):
    alice, _ = owners
    for kind in KINDS:
        response = call(with_token(forged(kind, alice.user)), endpoint)

        assert response.status_code == 401, (kind, response.content)
        assert response.json()["code"] == ("token_expired" if kind == "expired" else "token_not_valid")
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "llama3.1" not in response.content.decode()
    assert_untouched(alice)


@pytest.mark.parametrize("path", COLLECTIONS)
def test_a_misused_token_is_refused_on_the_collections(owners, path):
    alice, _ = owners
    for kind in KINDS:
        response = with_token(forged(kind, alice.user)).get(path)

        assert response.status_code == 401, kind
        assert "llama3.1" not in response.content.decode()


def test_a_blacklisted_refresh_token_gets_nothing(owners):
    alice, _ = owners
    pair = APIClient().post("/api/auth/token/", {"username": "alice", "password": "pw-123456"}, format="json").json()
    assert (
        APIClient().post("/api/auth/token/blacklist/", {"refresh": pair["refresh"]}, format="json").status_code == 200
    )

    refreshed = APIClient().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 401
    assert "access" not in refreshed.json()
    assert with_token(pair["refresh"]).get(alice.base).status_code == 401


def test_a_refresh_token_rotated_away_cannot_be_replayed_by_a_thief(owners):
    """Rotation blacklists the old refresh token: a stolen copy used after the owner refreshed fails."""
    pair = APIClient().post("/api/auth/token/", {"username": "alice", "password": "pw-123456"}, format="json").json()
    assert APIClient().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 200

    replay = APIClient().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert replay.status_code == 401
    assert replay.json()["code"] == "token_not_valid"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("feed", ["model", "job"])
def test_a_misused_token_closes_both_websocket_feeds_with_4401(ws_owners, feed, kind):
    alice, _ = ws_owners
    path = (
        f"/ws/model-management/models/{alice.model.name}/progress/"
        if feed == "model"
        else f"/ws/model-management/jobs/{alice.live_job.pk}/"
    )
    token = forged(kind, alice.user)

    async def main():
        ws = WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {token}".encode())])
        await ws.connect(timeout=5)
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}

    async_to_sync(main)()
