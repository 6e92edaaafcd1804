"""Throttles under concurrent requests: threads released together, each on its own connection.

DRF's throttle reads a client's history, decides, and writes it back; a short sleep between the
decision and the write (`slow_history_write`) makes requests overlap there every time, so an
unguarded read-decide-write lets all of them through (it did, on PostgreSQL: 12 of 12 at 3/min).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from models_mgmt.choices import Role
from tests.api.test_concurrency import run_together
from tests.conftest import bearer
from tests.factories import AIModelFactory, UserFactory, grant

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 12


@pytest.fixture
def rates(monkeypatch):
    def set_rate(scope: str, rate: str) -> None:
        monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, scope, rate)

    return set_rate


@pytest.fixture
def slow_history_write(monkeypatch):
    original = SimpleRateThrottle.throttle_success

    def slow(self):
        time.sleep(0.02)
        return original(self)

    monkeypatch.setattr(SimpleRateThrottle, "throttle_success", slow)


def hammer(requests: list[Callable[[], object]]) -> list:
    """Every request at once; returns the responses."""
    responses: list = []
    lock = threading.Lock()

    def wrap(request: Callable[[], object]) -> Callable[[], int]:
        def run() -> int:
            response = request()
            with lock:
                responses.append(response)
            return response.status_code

        return run

    run_together([wrap(r) for r in requests])
    return responses


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["code"] == "throttled"


def get_model(client: APIClient) -> Callable[[], object]:
    return lambda: client.get("/api/model-management/models/busy")


def guess_password(client: APIClient) -> Callable[[], object]:
    return lambda: client.post("/api/auth/token/", {"username": "victim", "password": "wrong"}, format="json")


@pytest.mark.parametrize("widened", [False, True], ids=["as-is", "widened-race-window"])
def test_concurrent_reads_over_the_user_rate(request, rates, widened):
    if widened:
        request.getfixturevalue("slow_history_write")
    rates("user", "3/min")
    owner = UserFactory(role=Role.MAINTAINER)
    model = AIModelFactory(name="busy", owner=owner)
    grant(owner, model, Role.MAINTAINER)

    responses = hammer([get_model(bearer(owner)) for _ in range(THREADS)])
    codes = sorted(r.status_code for r in responses)

    assert codes == [200] * 3 + [429] * (THREADS - 3), codes
    for response in responses:
        if response.status_code == 429:
            assert_throttled(response)
    assert_throttled(bearer(owner).get("/api/model-management/models"))  # and it stays throttled
    other = UserFactory(role=Role.VIEWER)
    assert bearer(other).get("/api/model-management/models").status_code == 200  # per user


@pytest.mark.parametrize("widened", [False, True], ids=["as-is", "widened-race-window"])
def test_concurrent_token_guessing_over_the_auth_rate(request, rates, widened):
    if widened:
        request.getfixturevalue("slow_history_write")
    rates("auth", "3/min")
    UserFactory(username="victim", role=Role.VIEWER)

    responses = hammer([guess_password(APIClient(REMOTE_ADDR="10.9.9.9")) for _ in range(THREADS)])
    codes = sorted(r.status_code for r in responses)

    assert codes == [401] * 3 + [429] * (THREADS - 3), codes
    for response in responses:
        if response.status_code == 429:
            assert_throttled(response)
