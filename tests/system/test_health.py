from __future__ import annotations

from rest_framework.test import APIClient

from models_mgmt.choices import Role
from tests.factories import UserFactory


def test_anonymous_health_shows_only_the_overall_status(db):
    response = APIClient().get("/api/health/")
    assert set(response.data) == {"status"}
    # No qcluster runs during the tests, so the worker component is down and the whole is degraded.
    assert (response.status_code, response.data["status"]) == (503, "degraded")


def test_signed_in_health_reports_each_component(db, api):
    response = api(UserFactory(role=Role.VIEWER)).get("/api/health/")
    components = response.data["components"]
    assert components["database"]["status"] == "up"
    assert components["broker"]["status"] == "up"
    assert components["broker"]["queued"] == 0
    assert components["workers"] == {
        "status": "down",
        "latencyMs": components["workers"]["latencyMs"],
        "clusters": 0,
        "workers": 0,
    }
    assert components["channelLayer"]["status"] == "up"


def test_health_reports_a_running_cluster(db, api, monkeypatch):
    """A cluster that publishes its statistics is counted with its workers."""
    from django_q.status import Stat

    class FakeStat:  # the shape django-q2's Stat.get_all() returns
        status = "Idle"
        workers = [1, 2]

    monkeypatch.setattr(Stat, "get_all", staticmethod(lambda *a, **k: [FakeStat()]))
    response = api(UserFactory(role=Role.VIEWER)).get("/api/health/")
    assert response.data["components"]["workers"]["status"] == "up"
    assert response.data["components"]["workers"]["workers"] == 2


def test_ping_answers_who_the_token_belongs_to_and_reads_nothing(db, api, django_assert_max_num_queries):
    user = UserFactory(role=Role.VIEWER)
    client = api(user)
    with django_assert_max_num_queries(1):  # the token's user, nothing else
        response = client.get("/api/ping/")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "user": user.username}


def test_ping_refuses_anonymous_callers(db):
    assert APIClient().get("/api/ping/").status_code == 401
