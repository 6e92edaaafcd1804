"""Versions: activation, rollback, comparison, metrics and drift as the seed names them."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from models_mgmt.choices import Role, VersionStatus
from models_mgmt.models import AuditEvent, ModelVersion
from tests.factories import ModelVersionFactory, UserFactory, grant

BASE = "/api/model-management/models/llama3.1:8b"


@pytest.fixture
def maintainer(ai_model):
    user = UserFactory(role=Role.MAINTAINER)
    grant(user, ai_model, Role.MAINTAINER)
    return user


@pytest.fixture
def versions(ai_model):
    return [
        ModelVersionFactory(model=ai_model, version="v1.0.0", status=VersionStatus.ACTIVE, accuracy=0.51,
                            performance_metrics={"signalAccuracy": 0.5, "overallScore": 0.51}),
        ModelVersionFactory(model=ai_model, version="v1.1.0", status=VersionStatus.READY, accuracy=0.56,
                            performance_metrics={"signalAccuracy": 0.55, "overallScore": 0.56}),
    ]  # fmt: skip


def status_of(version: str) -> str:
    return ModelVersion.objects.get(version=version).status


def test_versions_use_the_seed_field_names(api, maintainer, versions):
    response = api(maintainer).get(f"{BASE}/versions")
    assert response.status_code == 200
    item = response.data["results"][0]
    for key in ("id", "modelName", "version", "accuracy", "responseTime", "trainingDataSize", "trainingDate", "status",
                "performanceMetrics", "metadata"):  # fmt: skip
        assert key in item
    assert set(item["performanceMetrics"]) == {"patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"}
    for key in ("hyperparameters", "trainingDuration", "epochs", "loss", "validationAccuracy"):
        assert key in item["metadata"]


def test_activate_deprecates_the_previous_active(api, maintainer, versions):
    response = api(maintainer).post(f"{BASE}/versions/v1.1.0/activate")
    assert response.status_code == 200
    assert response.data["activeVersion"]["version"] == "v1.1.0"
    assert status_of("v1.1.0") == "active"
    assert status_of("v1.0.0") == "deprecated"
    event = AuditEvent.objects.get(action="version.activated")
    assert (event.before, event.after, event.actor) == (
        {"active": "v1.0.0"},
        {"active": "v1.1.0", "reason": "manual"},
        maintainer,
    )


def test_rollback_reactivates_a_deprecated_version(api, maintainer, versions):
    api(maintainer).post(f"{BASE}/versions/v1.1.0/activate")
    response = api(maintainer).post(f"{BASE}/versions/v1.0.0/activate")
    assert response.status_code == 200
    assert (status_of("v1.0.0"), status_of("v1.1.0")) == ("active", "deprecated")
    assert api(maintainer).get(BASE).data["activeVersion"] == "v1.0.0"


def test_activating_the_active_version_changes_nothing(api, maintainer, versions):
    assert api(maintainer).post(f"{BASE}/versions/v1.0.0/activate").status_code == 200
    assert not AuditEvent.objects.filter(action="version.activated").exists()


@pytest.mark.parametrize("status", [VersionStatus.TRAINING, VersionStatus.FAILED])
def test_unfinished_or_failed_versions_cannot_be_activated(api, maintainer, versions, ai_model, status):
    ModelVersionFactory(model=ai_model, version="v1.2.0", status=status)
    response = api(maintainer).post(f"{BASE}/versions/v1.2.0/activate")
    assert response.status_code == 409
    assert response.data["code"] == "invalid_transition"
    assert status_of("v1.0.0") == "active"  # nothing half-written


def test_unknown_version_is_404(api, maintainer, versions):
    assert api(maintainer).post(f"{BASE}/versions/v7.0.0/activate").status_code == 404
    assert api(maintainer).get(f"{BASE}/versions/v7.0.0").status_code == 404


def test_versioning_disabled_refuses_activation(api, maintainer, versions, settings):
    settings.MODEL_VERSIONING_ENABLED = False
    response = api(maintainer).post(f"{BASE}/versions/v1.1.0/activate")
    assert response.status_code == 503
    assert status_of("v1.1.0") == "ready"


def test_database_allows_one_active_version_per_model(versions, ai_model):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(version="v1.1.0").update(status=VersionStatus.ACTIVE)


def test_database_refuses_a_duplicate_version_number(versions, ai_model):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersionFactory(model=ai_model, version="v1.0.0", status=VersionStatus.READY)


def test_comparison_marks_the_best_value_per_metric(api, maintainer, versions):
    response = api(maintainer).get(f"{BASE}/comparison", {"versions": "v1.0.0,v1.1.0"})
    assert response.status_code == 200
    rows = {row["metric"]: row for row in response.data["metrics"]}
    assert rows["accuracy"]["values"] == {"v1.0.0": 0.51, "v1.1.0": 0.56}
    assert rows["accuracy"]["best"] == "v1.1.0"
    assert rows["responseTime"]["best"] is None  # equal values: no winner
    assert rows["backtestSharpe"]["values"] == {"v1.0.0": None, "v1.1.0": None}
    assert [v["version"] for v in response.data["versions"]] == ["v1.1.0", "v1.0.0"]


def test_comparison_of_an_unknown_version_is_404(api, maintainer, versions):
    response = api(maintainer).get(f"{BASE}/comparison", {"versions": "v1.0.0,v3.0.0"})
    assert response.status_code == 404
    assert "v3.0.0" in response.data["detail"]


def test_comparison_caps_the_number_of_versions(api, maintainer, versions):
    many = ",".join(f"v{i}.0.0" for i in range(21))
    assert api(maintainer).get(f"{BASE}/comparison", {"versions": many}).status_code == 400


def test_metrics_report_the_active_version_and_do_not_invent_live_numbers(api, maintainer, versions):
    response = api(maintainer).get(f"{BASE}/metrics")
    assert response.status_code == 200
    assert response.data["activeVersion"] == "v1.0.0"
    assert response.data["accuracy"] == 0.51
    assert response.data["performanceMetrics"]["signalAccuracy"] == 0.5
    # No prediction was served: live counts are 0, accuracy and latencies null, and it says why.
    live = response.data["live"]
    assert live["requests"] == 0 and live["resolved"] == 0
    assert live["tasks"]["signalAccuracy"] == {
        "accuracy": None,
        "correct": 0,
        "count": 0,
        "ci95": None,
        "enoughToJudge": False,
    }
    assert live["overallScore"] is None and live["responseTime"]["p95"] is None
    assert "no predictions" in live["reason"]
    assert response.data["drift"]["status"] == "not_checked_yet"


def test_metrics_without_an_active_version(api, maintainer):
    response = api(maintainer).get(f"{BASE}/metrics")
    assert response.status_code == 200
    assert response.data["activeVersion"] is None and response.data["accuracy"] is None


def test_drift_without_a_training_reference_says_so(api, maintainer, versions):
    """A version that records no training window has nothing to compare with: no invented verdict."""
    response = api(maintainer).get(f"{BASE}/drift")
    assert response.status_code == 200
    assert response.data["status"] == "insufficient_data"
    assert response.data["driftScore"] is None and response.data["recommendation"] is None
    assert "training window" in response.data["detail"]


def test_drift_detection_can_be_switched_off(api, maintainer, versions, settings):
    settings.MODEL_DRIFT_DETECTION_ENABLED = False
    assert api(maintainer).get(f"{BASE}/drift").status_code == 503
    assert api(maintainer).get(f"{BASE}/metrics").data["drift"] == {"status": "disabled"}
