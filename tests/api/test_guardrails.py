"""The guardrails API: reading the policy (defaults when none is stored), changing it (validated,
audited), the evaluations (paginated) and running one now. The permission matrix covers who may."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from models_mgmt.choices import Role, VersionStatus
from models_mgmt.models import AuditEvent, GuardrailEvaluation, GuardrailPolicy, Prediction
from tests.factories import AIModelFactory, ModelVersionFactory, UserFactory, grant

URL = "/api/model-management/models/guarded/guardrails"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model(db):
    model = AIModelFactory(name="guarded")
    grant(model.owner, model, Role.MAINTAINER)
    ModelVersionFactory(model=model, version="v1.0.0", status=VersionStatus.ACTIVE, activated_at=timezone.now())
    return model


def test_a_model_without_a_policy_shows_the_defaults_off(api, model):
    data = api(model.owner).get(URL).data
    assert data["stored"] is False and data["canEdit"] is True and data["activeVersion"] == "v1.0.0"
    policy = data["policy"]
    assert policy["enabled"] is False and policy["accuracyTasks"] == ["signal", "risk", "pattern"]
    assert (policy["accuracyMargin"], policy["accuracyMinResolved"], policy["latencyM"], policy["latencyN"]) == (
        0.05, 50, 3, 5,
    )  # fmt: skip
    assert data["rolledBackVersions"] == [] and data["lastEvaluation"] is None


def test_put_changes_the_given_fields_and_is_audited(api, model):
    response = api(model.owner).put(
        URL, {"enabled": True, "accuracyTasks": ["signal"], "latencyP95Ms": 80}, format="json"
    )
    assert response.status_code == 200, response.data
    assert response.data["policy"]["enabled"] is True and response.data["policy"]["latencyP95Ms"] == 80.0
    response = api(model.owner).put(URL, {"latencyM": 2, "latencyN": 4}, format="json")
    policy = response.data["policy"]
    assert policy["accuracyTasks"] == ["signal"] and (policy["latencyM"], policy["latencyN"]) == (2, 4)
    assert policy["updatedBy"] == model.owner.username
    events = AuditEvent.objects.filter(action="guardrail.policy_updated").order_by("id")
    assert events.count() == 2 and events[0].before is None and events[1].before["latencyN"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enable": True}, "enable"),
        ({"enabled": "yes"}, "enabled"),
        ({"accuracyMargin": -0.1}, "accuracyMargin"),
        ({"accuracyMargin": "0.1"}, "accuracyMargin"),
        ({"accuracyMinResolved": 2.5}, "accuracyMinResolved"),
        ({"accuracyMinResolved": True}, "accuracyMinResolved"),
        ({"accuracyAlpha": 0}, "accuracyAlpha"),
        ({"accuracyTasks": []}, "accuracyTasks"),
        ({"accuracyTasks": ["signal", "signal"]}, "accuracyTasks"),
        ({"accuracyTasks": ["volume"]}, "accuracyTasks"),
        ({"latencyWindowMinutes": 0}, "latencyWindowMinutes"),
        ({"latencyM": 6}, "latencyM"),  # more than latencyN (5)
        ({"cooldownHours": 1e9}, "cooldownHours"),
        ({"cooldownUntil": "2030-01-01T00:00:00Z"}, "cooldownUntil"),
        ({"updatedAt": "2030-01-01T00:00:00Z"}, "updatedAt"),
    ],
)
def test_bad_input_is_refused_with_field_errors(api, model, body, field):
    response = api(model.owner).put(URL, body, format="json")
    assert response.status_code == 400, response.data
    assert field in response.data["fields"]
    assert not GuardrailPolicy.objects.exists()


def test_a_list_body_is_refused(api, model):
    response = api(model.owner).put(URL, [1, 2], format="json")
    assert response.status_code == 400


def test_put_null_cooldown_ends_it(api, model):
    GuardrailPolicy.objects.create(model=model, enabled=True, cooldown_until=timezone.now() + dt.timedelta(hours=3))
    assert api(model.owner).get(URL).data["cooldownActive"] is True
    response = api(model.owner).put(URL, {"cooldownUntil": None}, format="json")
    assert response.data["cooldownActive"] is False and response.data["policy"]["cooldownUntil"] is None


def test_a_viewer_reads_but_cannot_change_or_evaluate(api, model):
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, model, Role.VIEWER)
    assert api(viewer).get(URL).data["canEdit"] is False
    assert api(viewer).put(URL, {"enabled": True}, format="json").status_code == 403
    assert api(viewer).post(f"{URL}/evaluate").status_code == 403
    assert not GuardrailPolicy.objects.exists() and not GuardrailEvaluation.objects.exists()


def test_evaluate_now_and_the_paginated_history(api, model):
    for _ in range(3):
        response = api(model.owner).post(f"{URL}/evaluate")
        assert response.status_code == 200, response.data
    assert response.data["trigger"] == "manual" and response.data["verdict"] == "inconclusive"
    assert response.data["action"] == "none" and response.data["version"] == "v1.0.0"
    assert {"accuracy", "latency", "evidence"} <= set(response.data["checks"])
    page = api(model.owner).get(f"{URL}/evaluations", {"pageSize": 2}).data
    assert page["count"] == 3 and len(page["results"]) == 2 and page["results"][0]["id"] == response.data["id"]
    assert api(model.owner).get(URL).data["lastEvaluation"]["id"] == response.data["id"]


def test_guardrail_requests_in_a_fresh_web_process_never_import_pandas_or_scipy(api, transactional_db):
    """The evaluation is pure Python (the binomial tail with math): the web process that serves
    GET/PUT guardrails and POST evaluate stays free of pandas and scipy."""
    from rest_framework_simplejwt.tokens import RefreshToken

    model = AIModelFactory(name="guarded")
    grant(model.owner, model, Role.MAINTAINER)
    version = ModelVersionFactory(model=model, status=VersionStatus.ACTIVE, activated_at=timezone.now())
    ledger = [
        Prediction(
            model=model, version=version, source="bars", as_of=timezone.now(), horizon=5, breakout_window=20,
            due_on=timezone.now(), features=[0.0], outputs={}, latency_ms=3.0, resolved_at=timezone.now(),
            correct={"signal": i % 3 == 0, "risk": True, "pattern": True},
        )
        for i in range(120)
    ]  # fmt: skip
    Prediction.objects.bulk_create(ledger)
    database = {k: connection.settings_dict[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    script = f"""
import json, os, sys
import tests.settings
tests.settings.DATABASES["default"].update(json.loads(os.environ["TEST_DATABASE"]))
import techanal.asgi  # the whole web stack
from rest_framework.test import APIClient
client = APIClient(SERVER_NAME="localhost", HTTP_AUTHORIZATION="Bearer " + os.environ["TOKEN"])
answers = [
    client.put("{URL}", {{"enabled": True}}, format="json").status_code,
    client.post("{URL}/evaluate").status_code,
    client.get("{URL}").status_code,
    client.get("{URL}/evaluations").status_code,
]
print(json.dumps({{"answers": answers, "loaded": [m for m in ("pandas", "scipy") if m in sys.modules]}}))
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE": json.dumps(database),
        "TOKEN": str(RefreshToken.for_user(model.owner).access_token),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"answers": [200, 200, 200, 200], "loaded": []}
    evaluation = GuardrailEvaluation.objects.get()
    assert evaluation.verdict == "breach" and evaluation.action == "alert_only"  # signal 1/3 right, nothing older
