"""Over the rate limit -> 429 with Retry-After and the common error body.

DRF reads rates from SimpleRateThrottle.THROTTLE_RATES, a dict captured at import time (all throttle
classes share it), so the tests lower a rate by patching that dict. The cache is cleared between tests.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from models_mgmt.choices import Role
from models_mgmt.models import TrainingJob
from tests.factories import AIModelFactory, UserFactory, grant

BASE = "/api/model-management/models/llama3.1:8b"
FINE_TUNE = f"{BASE}/fine-tune"
TOKEN = "/api/auth/token/"


@pytest.fixture
def rates(monkeypatch):
    def set_rate(scope: str, rate: str) -> None:
        monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, scope, rate)

    return set_rate


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 3600
    body = response.json()
    assert body["code"] == "throttled"
    assert isinstance(body["detail"], str) and body["detail"]


def test_rates_dict_is_shared_by_all_throttles():
    """The premise of the patching below."""
    assert ScopedRateThrottle.THROTTLE_RATES is SimpleRateThrottle.THROTTLE_RATES
    assert {"anon", "user", "training", "auth"} <= set(SimpleRateThrottle.THROTTLE_RATES)


def test_fine_tune_is_throttled_by_training_scope_while_reads_still_pass(ai_model, api, owner, rates):
    rates("training", "2/min")
    client = api(owner)

    assert client.post(FINE_TUNE, {"epochs": 3}, format="json").status_code == 202
    assert client.post(FINE_TUNE, {"epochs": 3}, format="json").status_code == 409  # already training
    third = client.post(FINE_TUNE, {"epochs": 3}, format="json")

    assert_throttled(third)
    assert TrainingJob.objects.filter(model=ai_model).count() == 1
    for path in (BASE, f"{BASE}/fine-tune/status", f"{BASE}/versions", "/api/model-management/models"):
        assert client.get(path).status_code == 200, path


def test_training_scope_counts_refused_requests_too(ai_model, api, owner, rates):
    """Bad bodies count: a client cannot probe the endpoint without limit."""
    rates("training", "2/min")
    client = api(owner)

    assert client.post(FINE_TUNE, {"epochs": 0}, format="json").status_code == 400
    assert client.post(FINE_TUNE, {"epochs": 0}, format="json").status_code == 400
    assert_throttled(client.post(FINE_TUNE, {"epochs": 3}, format="json"))
    assert not TrainingJob.objects.filter(model=ai_model).exists()


def test_training_throttle_is_per_user(ai_model, api, owner, rates):
    rates("training", "1/min")
    other = UserFactory(role=Role.TRAINER)
    other_model = AIModelFactory(name="other-model")
    grant(other, other_model, Role.TRAINER)

    assert api(owner).post(FINE_TUNE, {"epochs": 3}, format="json").status_code == 202
    assert_throttled(api(owner).post(FINE_TUNE, {"epochs": 3}, format="json"))

    response = api(other).post("/api/model-management/models/other-model/fine-tune", {"epochs": 3}, format="json")
    assert response.status_code == 202, response.content


def test_user_scope_throttles_reads(ai_model, api, owner, rates):
    rates("user", "3/min")
    client = api(owner)

    for _ in range(3):
        assert client.get(BASE).status_code == 200
    assert_throttled(client.get(BASE))
    assert_throttled(client.get("/api/model-management/models"))

    stranger = UserFactory(role=Role.VIEWER)
    assert api(stranger).get("/api/model-management/models").status_code == 200


def test_user_scope_is_per_user_not_per_token(ai_model, api, owner, rates):
    """A fresh token for the same user does not reset the count."""
    rates("user", "2/min")

    assert api(owner).get(BASE).status_code == 200
    assert api(owner).get(BASE).status_code == 200
    assert_throttled(api(owner).get(BASE))


def test_anonymous_requests_throttled_by_anon_scope(db, rates):
    rates("anon", "2/min")
    client = APIClient()

    assert client.get("/api/health/").status_code in (200, 503)
    assert client.get("/api/health/").status_code in (200, 503)
    assert_throttled(client.get("/api/health/"))


def test_token_endpoint_throttled_by_auth_scope(db, rates):
    rates("auth", "2/min")
    user = UserFactory(role=Role.VIEWER)
    client = APIClient()

    assert client.post(TOKEN, {"username": user.username, "password": "wrong"}, format="json").status_code == 401
    assert client.post(TOKEN, {"username": user.username, "password": "wrong"}, format="json").status_code == 401
    # Even the right password is refused now: guessing is capped.
    assert_throttled(client.post(TOKEN, {"username": user.username, "password": "pw-123456"}, format="json"))


def test_auth_scope_is_per_client_address(db, rates):
    rates("auth", "1/min")
    user = UserFactory(role=Role.VIEWER)
    body = {"username": user.username, "password": "pw-123456"}

    assert APIClient(REMOTE_ADDR="10.0.0.1").post(TOKEN, body, format="json").status_code == 200
    assert_throttled(APIClient(REMOTE_ADDR="10.0.0.1").post(TOKEN, body, format="json"))
    assert APIClient(REMOTE_ADDR="10.0.0.2").post(TOKEN, body, format="json").status_code == 200


def test_auth_scope_cannot_be_dodged_with_a_forged_forwarded_for_header(db, rates):
    """No trusted proxy is configured, so a client-sent X-Forwarded-For must not pick the throttle bucket."""
    rates("auth", "2/min")
    user = UserFactory(role=Role.VIEWER)
    client = APIClient(REMOTE_ADDR="10.0.0.1")

    responses = [
        client.post(
            TOKEN,
            {"username": user.username, "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        )
        for i in range(3)
    ]

    assert [r.status_code for r in responses[:2]] == [401, 401]
    assert_throttled(responses[2])


def test_refresh_endpoint_throttled_by_auth_scope(db, rates):
    rates("auth", "1/min")
    user = UserFactory(role=Role.VIEWER)
    client = APIClient()

    pair = client.post(TOKEN, {"username": user.username, "password": "pw-123456"}, format="json")
    assert pair.status_code == 200
    assert_throttled(client.post("/api/auth/token/refresh/", {"refresh": pair.json()["refresh"]}, format="json"))


def test_default_rates_do_not_throttle_normal_use(ai_model, api, owner):
    client = api(owner)

    for _ in range(20):
        assert client.get(BASE).status_code == 200
