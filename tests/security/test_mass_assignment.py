"""Mass assignment: fields a client must not set (owner, status, metrics, version, ...) are refused
with a 400 naming them where a body is read, and have no effect where no body is read."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from models_mgmt.choices import AlertStatus, JobStatus, VersionStatus
from models_mgmt.models import AIModel, Dataset, ModelVersion, Prediction, TrainingJob
from tests.conftest import bearer

API = "/api/model-management"
FORBIDDEN = {
    "owner": "bob",
    "status": "active",
    "activeVersion": "v1.1.0",
    "accuracy": 0.99,
    "performanceMetrics": {"overallScore": 0.99},
    "version": "v9.9.9",
    "permissions": ["view", "finetune", "activate", "manage"],
    "createdAt": "2000-01-01T00:00:00Z",
    "id": 1,
}


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["fields"], body


@pytest.mark.parametrize("field", sorted(FORBIDDEN))
def test_registering_a_model_refuses_server_owned_fields(owners, field):
    alice, _ = owners
    response = bearer(alice.user).post(f"{API}/models", {"name": "fresh", field: FORBIDDEN[field]}, format="json")

    assert_refused(response, field)
    assert not AIModel.objects.filter(name="fresh").exists()


@pytest.mark.parametrize("field", sorted({**FORBIDDEN, "name": "renamed", "family": "other"}))
def test_editing_a_model_refuses_server_owned_fields(owners, field):
    alice, _ = owners
    value = {**FORBIDDEN, "name": "renamed", "family": "other"}[field]
    response = bearer(alice.user).patch(alice.base, {"description": "x", field: value}, format="json")

    assert_refused(response, field)
    model = AIModel.objects.get(pk=alice.model.pk)
    assert (model.name, model.owner, model.family) == ("llama3.1:8b", alice.user, "multitask-mlp")
    assert model.description == "edited by alice"  # the whole request is refused, not half applied
    assert model.versions.get(status=VersionStatus.ACTIVE).version == "v1.0.0"


@pytest.mark.parametrize("field", ["status", "version", "owner", "performanceMetrics", "progress", "id", "attempt"])
def test_a_fine_tune_request_refuses_job_fields(owners, field):
    alice, _ = owners
    alice.live_job.status = JobStatus.STOPPED
    alice.live_job.save()
    before = TrainingJob.objects.count()
    response = bearer(alice.user).post(
        f"{alice.base}/fine-tune", {"epochs": 2, field: FORBIDDEN.get(field, 5)}, format="json"
    )

    assert_refused(response, field)
    assert TrainingJob.objects.count() == before


def test_access_changes_refuse_extra_fields(owners):
    alice, bob = owners
    response = bearer(alice.user).post(
        f"{alice.base}/access", {"user": "bob", "role": "viewer", "permissions": ["manage"]}, format="json"
    )

    assert_refused(response, "permissions")
    assert not bob.user.has_perm("models_mgmt.view_aimodel", alice.model)


def test_activation_reads_no_body(owners):
    """Only the URL says which version: a body naming another version or a status changes nothing."""
    alice, _ = owners
    response = bearer(alice.user).post(
        f"{alice.base}/versions/v1.1.0/activate",
        {"version": "v1.0.0", "status": "archived", "accuracy": 0.99, "performanceMetrics": {"overallScore": 1}},
        format="json",
    )

    assert response.status_code == 200, response.content
    versions = {v.version: v for v in ModelVersion.objects.filter(model=alice.model)}
    assert versions["v1.1.0"].status == VersionStatus.ACTIVE
    assert versions["v1.0.0"].status == VersionStatus.DEPRECATED
    assert versions["v1.1.0"].accuracy == pytest.approx(0.62)
    assert versions["v1.1.0"].performance_metrics["overallScore"] == pytest.approx(0.55)


def test_acknowledging_reads_no_body(owners):
    alice, _ = owners
    response = bearer(alice.user).post(
        f"{alice.base}/alerts/{alice.alert.pk}/acknowledge", {"status": "resolved"}, format="json"
    )

    assert response.status_code == 200
    alice.alert.refresh_from_db()
    assert alice.alert.status == AlertStatus.ACKNOWLEDGED


def test_stopping_reads_no_body(owners):
    alice, _ = owners
    response = bearer(alice.user).post(f"{alice.base}/fine-tune/stop", {"status": "failed"}, format="json")

    assert response.status_code == 200
    assert TrainingJob.objects.get(pk=alice.live_job.pk).status == JobStatus.STOPPED


def test_a_prediction_cannot_choose_a_version(owners):
    """The active version serves; a client-sent version is refused, not obeyed."""
    alice, _ = owners
    body = {"dataset": "sample", "asOf": "2020-10-01", "version": "v1.1.0"}
    response = bearer(alice.user).post(f"{alice.base}/predict", body, format="json")

    assert_refused(response, "version")
    assert not Prediction.objects.exists()


def test_appending_bars_refuses_extra_fields(owners):
    alice, _ = owners
    bar = {"date": "2021-01-01", "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10}
    client = bearer(alice.user)

    assert_refused(
        client.post(f"{API}/datasets/sample/bars", {"bars": [bar], "barCount": 9}, format="json"), "barCount"
    )
    response = client.post(f"{API}/datasets/sample/bars", {"bars": [{**bar, "dataset": "other"}]}, format="json")
    assert response.status_code == 400
    assert Dataset.objects.get(name="sample").bar_count == 300


@pytest.mark.parametrize("field", ["createdBy", "barCount", "source", "firstDate"])
def test_a_dataset_upload_refuses_server_owned_fields(owners, field):
    alice, _ = owners
    data = {
        "name": "up",
        "symbol": "UP",
        "file": SimpleUploadedFile("b.csv", b"Date,Open,High,Low,Close,Volume\n2021-03-01,1,2,0.5,1.5,10\n"),
        field: "bob" if field == "createdBy" else "7",
    }
    response = bearer(alice.user).post(f"{API}/datasets", data, format="multipart")

    assert_refused(response, field)
    assert not Dataset.objects.filter(name="up").exists()
