"""JWT bearer auth for the API (short-lived access, rotating refresh with blacklist) and sessions for admin."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from models_mgmt.choices import Role
from tests.factories import UserFactory

TOKEN = "/api/auth/token/"
REFRESH = "/api/auth/token/refresh/"
BLACKLIST = "/api/auth/token/blacklist/"
PROTECTED = "/api/model-management/models"
PASSWORD = "pw-123456"  # what UserFactory sets


@pytest.fixture
def user(db):
    return UserFactory(role=Role.VIEWER)


def with_bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def obtain(user) -> dict:
    response = APIClient().post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def access_claims(user) -> dict:
    now = int(time.time())
    return {
        "token_type": "access",
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": str(user.pk),
    }


def assert_refused(response) -> None:
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["code"] == "token_not_valid"


def assert_error_shape(response) -> None:
    """Every error body is {"detail": <text>, "code": <text>, "fields"?}."""
    body = response.json()
    assert isinstance(body["detail"], str), body
    assert isinstance(body["code"], str), body


# --- Obtaining tokens -----------------------------------------------------------------------------


def test_obtain_token_pair_with_username_and_password(user):
    pair = obtain(user)

    assert set(pair) >= {"access", "refresh"}
    assert AccessToken(pair["access"])["user_id"] == str(user.pk)
    assert RefreshToken(pair["refresh"])["user_id"] == str(user.pk)
    user.refresh_from_db()
    assert user.last_login is not None  # UPDATE_LAST_LOGIN


def test_wrong_password_is_401(user):
    response = APIClient().post(TOKEN, {"username": user.username, "password": "wrong-password"}, format="json")

    assert response.status_code == 401, response.content
    assert "access" not in response.json()
    assert_error_shape(response)


def test_unknown_user_is_401(db):
    response = APIClient().post(TOKEN, {"username": "nobody", "password": PASSWORD}, format="json")

    assert response.status_code == 401


def test_missing_password_is_400_naming_the_field(user):
    response = APIClient().post(TOKEN, {"username": user.username}, format="json")

    assert response.status_code == 400, response.content
    assert "password" in response.json()["fields"]


def test_inactive_user_cannot_obtain_tokens(user):
    user.is_active = False
    user.save()

    response = APIClient().post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json")

    assert response.status_code == 401


# --- Using access tokens -------------------------------------------------------------------------


def test_access_token_works_as_bearer(user):
    pair = obtain(user)

    assert with_bearer(pair["access"]).get(PROTECTED).status_code == 200
    assert APIClient().get(PROTECTED).status_code == 401


def test_refresh_token_is_not_accepted_as_access_token(user):
    pair = obtain(user)

    assert with_bearer(pair["refresh"]).get(PROTECTED).status_code == 401


def test_expired_access_token_is_401(user):
    token = AccessToken.for_user(user)
    assert with_bearer(str(token)).get(PROTECTED).status_code == 200  # the same token, still valid

    token.set_exp(lifetime=-timedelta(seconds=1))
    response = with_bearer(str(token)).get(PROTECTED)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "The access token has expired; get a new one from /api/auth/token/refresh/.",
        "code": "token_expired",
    }
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_that_is_not_ours_or_not_an_access_token_is_only_not_valid(user):
    """token_expired says "refresh"; a forged or misused token must not learn that much."""
    expired = {**access_claims(user), "exp": int(time.time()) - 60}
    forged = jwt.encode(expired, "another-secret-key-that-is-not-the-servers-0123456789", algorithm="HS256")
    assert_refused(with_bearer(forged).get(PROTECTED))
    refresh = RefreshToken.for_user(user)
    refresh.set_exp(lifetime=-timedelta(seconds=1))
    assert_refused(with_bearer(str(refresh)).get(PROTECTED))


def test_correctly_signed_handmade_token_is_accepted(user):
    """The control for the two tests below: these claims, signed with the server's key, pass."""
    token = jwt.encode(access_claims(user), settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")

    assert with_bearer(token).get(PROTECTED).status_code == 200


def test_alg_none_token_is_401(user):
    for alg in ("none", "None", "NONE"):
        token = f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(access_claims(user))}."
        assert_refused(with_bearer(token).get(PROTECTED))


def test_token_signed_with_another_key_is_401(user):
    token = jwt.encode(access_claims(user), "another-secret-key-that-is-not-the-servers-0123456789", algorithm="HS256")

    assert_refused(with_bearer(token).get(PROTECTED))


def test_tampered_payload_is_401(db, user):
    other = UserFactory(role=Role.MAINTAINER)
    header, _, signature = str(AccessToken.for_user(user)).split(".")
    forged = f"{header}.{b64url(access_claims(other))}.{signature}"

    assert_refused(with_bearer(forged).get(PROTECTED))


def test_garbage_token_is_401(db):
    assert_refused(with_bearer("not-a-jwt").get(PROTECTED))


def test_invalid_token_error_body_has_the_common_shape(db):
    """detail is text, as on every other error; not a nested object."""
    response = with_bearer("abc.def.ghi").get(PROTECTED)

    assert response.status_code == 401
    assert_error_shape(response)


def test_deactivated_users_access_token_is_401(user):
    pair = obtain(user)
    user.is_active = False
    user.save()

    response = with_bearer(pair["access"]).get(PROTECTED)

    assert response.status_code == 401


def test_deleted_users_access_token_is_401(user):
    pair = obtain(user)
    user.delete()

    assert with_bearer(pair["access"]).get(PROTECTED).status_code == 401


# --- Refresh: rotation and blacklist -------------------------------------------------------------


def test_refresh_rotates_and_old_refresh_token_is_then_refused(user):
    pair = obtain(user)

    response = APIClient().post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200, response.content
    new = response.json()
    assert new["refresh"] != pair["refresh"]
    assert with_bearer(new["access"]).get(PROTECTED).status_code == 200

    reuse = APIClient().post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert_refused(reuse)

    again = APIClient().post(REFRESH, {"refresh": new["refresh"]}, format="json")
    assert again.status_code == 200  # the rotated-in token still works


def test_access_token_cannot_be_used_to_refresh(user):
    pair = obtain(user)

    assert APIClient().post(REFRESH, {"refresh": pair["access"]}, format="json").status_code == 401


def test_blacklist_signs_out_the_refresh_token(user):
    pair = obtain(user)

    response = APIClient().post(BLACKLIST, {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200, response.content

    assert_refused(APIClient().post(REFRESH, {"refresh": pair["refresh"]}, format="json"))
    assert APIClient().post(BLACKLIST, {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_deactivated_user_cannot_refresh(user):
    pair = obtain(user)
    user.is_active = False
    user.save()

    response = APIClient().post(REFRESH, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401


# --- Sessions (admin and dashboard) --------------------------------------------------------------


def test_admin_login_page_works(db):
    response = APIClient().get("/admin/login/")

    assert response.status_code == 200
    assert b"password" in response.content


def test_session_login_reaches_the_api(user):
    client = APIClient()
    assert client.login(username=user.username, password=PASSWORD)

    assert client.get(PROTECTED).status_code == 200


def test_session_authenticated_write_needs_csrf_token(db):
    maintainer = UserFactory(role=Role.MAINTAINER)
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username=maintainer.username, password=PASSWORD)

    response = client.post(PROTECTED, {"name": "csrf-model"}, format="json")

    assert response.status_code == 403, response.content
    assert "CSRF" in response.json()["detail"]
