"""Security headers on every kind of response, and CSRF for session (dashboard) users."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.api.test_permission_matrix import ENDPOINTS
from tests.conftest import bearer

from .test_object_access import assert_untouched

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PASSWORD = "pw-123456"


def assert_security_headers(response) -> None:
    for name, value in HEADERS.items():
        assert response.get(name) == value, (name, response.get(name), response.request["PATH_INFO"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/model-management/models",  # 200 JSON
        "/api/model-management/models/llama3.1:8b/versions",
        "/api/model-management/models/someone-elses",  # 404 JSON (DRF)
        "/api/model-management/models/%C2%84",  # 404 JSON (no route)
        "/api/health/",
        "/api/schema/",
    ],
)
def test_api_responses_carry_the_security_headers(owners, path):
    alice, _ = owners
    assert_security_headers(bearer(alice.user).get(path))


def test_refusals_carry_the_security_headers(owners):
    assert_security_headers(Client().get("/api/model-management/models"))  # 401


def test_the_api_docs_keep_the_sites_opener_policy(owners):
    """drf-spectacular sent `Cross-Origin-Opener-Policy: unsafe-none` on Swagger UI (for OAuth2 pop-ups)."""
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert_security_headers(response)


@pytest.mark.parametrize(
    "path",
    [
        "/model-management/",
        "/model-management/fine-tuning/",
        "/model-management/versions/",
        "/model-management/monitoring/",
        "/accounts/login/",
        "/admin/login/",
        "/no-such-page/",
    ],
)
def test_pages_carry_the_security_headers(owners, path):
    alice, _ = owners
    client = Client()
    client.force_login(alice.user)
    assert_security_headers(client.get(path))


def session_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_token(client: Client) -> str:
    client.get("/model-management/")  # a page sets the CSRF cookie, as in the browser
    return client.cookies["csrftoken"].value


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.method != "get"], ids=str)
def test_a_session_write_without_the_csrf_token_is_refused(owners, endpoint):
    alice, _ = owners
    client = session_client(alice.user)
    csrf_token(client)  # the cookie is there; only the header is missing, as in a forged cross-site form

    response = getattr(client, endpoint.method)(endpoint.path, endpoint.body, content_type="application/json")

    assert response.status_code == 403, response.content
    assert "CSRF" in response.json()["detail"]
    assert_untouched(alice)


def test_the_same_session_write_with_the_token_passes(owners):
    alice, _ = owners
    client = session_client(alice.user)
    token = csrf_token(client)

    response = client.patch(
        alice.base, {"description": "from the dashboard"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )

    assert response.status_code == 200, response.content


def test_a_bearer_token_needs_no_csrf_token(owners):
    """CSRF guards cookies; an Authorization header cannot be sent by a cross-site form."""
    alice, _ = owners
    assert bearer(alice.user).patch(alice.base, {"description": "api"}, format="json").status_code == 200


def test_the_login_form_needs_its_token(owners):
    client = Client(enforce_csrf_checks=True)
    refused = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert refused.status_code == 403
    assert "_auth_user_id" not in client.session

    page = client.get("/accounts/login/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    accepted = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert accepted.status_code == 302 and accepted["Location"] == "/model-management/"


def test_sign_out_needs_the_token_too(owners):
    alice, _ = owners
    client = session_client(alice.user)

    assert client.post("/accounts/logout/").status_code == 403
    assert client.get("/model-management/").status_code == 200  # still signed in
    token = client.cookies["csrftoken"].value
    assert client.post("/accounts/logout/", HTTP_X_CSRFTOKEN=token).status_code == 302
    assert client.get("/model-management/").status_code == 302


def test_session_cookies_are_not_readable_by_scripts_and_same_site(owners, settings):
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.SESSION_COOKIE_SAMESITE == "Lax" and settings.CSRF_COOKIE_SAMESITE == "Lax"
    client = Client()
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert client.cookies["sessionid"]["httponly"] is True
    assert client.cookies["sessionid"]["samesite"] == "Lax"
