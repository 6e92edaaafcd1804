"""The job wrapper in-process: outcomes, failures a user can act on, the reaper, version numbers."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from models_mgmt.choices import JobStatus, VersionStatus
from models_mgmt.models import AuditEvent, ModelVersion, TrainingJob
from models_mgmt.services.training_jobs import training_job_claim, training_job_finish
from models_mgmt.services.versions import _activate_if_better, next_version_number
from models_mgmt.training.progress import JobProgress
from models_mgmt.training.reaper import training_jobs_reap
from models_mgmt.training.worker import training_job_execute
from tests.factories import AIModelFactory, ModelVersionFactory, TrainingJobFactory
from tests.jobs.helpers import start
from tests.live import dead_pid

QUICK = {"epochs": 2, "startDate": "2016-01-01"}


def test_fine_tune_starts_from_the_active_version_and_records_lineage(api, sp500_model):
    first = training_job_execute(job_id=start(api, sp500_model, QUICK))
    assert first.version == "v1.0.0"
    api(sp500_model.owner).post(f"/api/model-management/models/{sp500_model.name}/versions/v1.0.0/activate")
    second = training_job_execute(job_id=start(api, sp500_model, {**QUICK, "hyperparameters": {"freezeTrunk": True}}))
    assert second.version == "v1.1.0"
    version = ModelVersion.objects.get(model=sp500_model, version="v1.1.0")
    assert version.parent.version == "v1.0.0"
    lineage = version.metadata["lineage"]
    assert lineage["parentVersion"] == "v1.0.0" and lineage["config"]["hyperparameters"]["freezeTrunk"] is True
    assert lineage["codeRevision"]
    # The frozen trunk of v1.1.0 is v1.0.0's trunk: the run really started from the base weights.
    from models_mgmt.engine.artifact import load_weights

    base, tuned = load_weights(version.parent.artifact_path), load_weights(version.artifact_path)
    trunk = [k for k in base if k.startswith("trunk")]
    assert trunk and all((base[k] == tuned[k]).all() for k in trunk)


def test_if_better_activates_when_nothing_is_active(api, sp500_model):
    outcome = training_job_execute(job_id=start(api, sp500_model, {**QUICK, "activationPolicy": "if_better"}))
    assert ModelVersion.objects.get(version=outcome.version).status == VersionStatus.ACTIVE
    assert AuditEvent.objects.get(action="version.activated").after["reason"] == "activationPolicy=if_better"


def test_if_better_compares_on_the_same_window(api, sp500_model):
    training_job_execute(job_id=start(api, sp500_model, QUICK))
    api(sp500_model.owner).post(f"/api/model-management/models/{sp500_model.name}/versions/v1.0.0/activate")
    outcome = training_job_execute(job_id=start(api, sp500_model, {**QUICK, "activationPolicy": "if_better"}))
    new = ModelVersion.objects.get(version=outcome.version)
    rival = new.metadata["activeVersionOnWindow"]
    assert rival["version"] == "v1.0.0"
    beats = new.performance_metrics["overallScore"] > rival["performanceMetrics"]["overallScore"]
    assert new.status == (VersionStatus.ACTIVE if beats else VersionStatus.READY)


@pytest.mark.parametrize(
    ("new_score", "active_score", "activated"), [(0.6, 0.5, True), (0.5, 0.5, False), (0.4, 0.5, False)]
)
def test_if_better_decision(db, new_score, active_score, activated):
    model = AIModelFactory()
    ModelVersionFactory(model=model, version="v1.0.0", status=VersionStatus.ACTIVE)
    new = ModelVersionFactory(model=model, version="v1.1.0", performance_metrics={"overallScore": new_score})
    job = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.SUCCEEDED)
    rival = {"version": "v1.0.0", "performanceMetrics": {"overallScore": active_score}}
    _activate_if_better(job, new, rival)
    new.refresh_from_db()
    assert (new.status == VersionStatus.ACTIVE) is activated


def test_a_missing_base_artifact_fails_with_a_reason(api, sp500_model):
    ModelVersionFactory(model=sp500_model, version="v1.0.0", status=VersionStatus.ACTIVE, artifact_path="/nowhere")
    job_id = start(api, sp500_model, QUICK)
    assert training_job_execute(job_id=job_id).status == JobStatus.FAILED
    job = TrainingJob.objects.get(pk=job_id)
    assert job.error_code == "artifact_missing" and "v1.0.0" in job.error
    assert job.finished_at is not None
    assert not ModelVersion.objects.filter(model=sp500_model).exclude(version="v1.0.0").exists()


def test_too_little_data_fails_with_a_reason_and_no_version(api, sp500_model):
    job_id = start(api, sp500_model, {"epochs": 2, "startDate": "2018-11-01"})
    assert training_job_execute(job_id=job_id).status == JobStatus.FAILED
    job = TrainingJob.objects.get(pk=job_id)
    assert job.error_code == "invalid_data" and "not enough bars" in job.error
    assert not ModelVersion.objects.filter(model=sp500_model).exists()


def test_a_job_is_claimed_once(api, sp500_model):
    job_id = start(api, sp500_model, QUICK)
    assert training_job_claim(job_id=job_id) is not None
    assert training_job_claim(job_id=job_id) is None  # a duplicate delivery does nothing
    assert TrainingJob.objects.get(pk=job_id).attempts == 1


def test_a_stopped_queued_job_is_never_run(api, sp500_model):
    job_id = start(api, sp500_model, QUICK)
    api(sp500_model.owner).post(f"/api/model-management/models/{sp500_model.name}/fine-tune/stop")
    assert training_job_execute(job_id=job_id).status == "skipped"
    assert TrainingJob.objects.get(pk=job_id).status == JobStatus.STOPPED


@pytest.fixture
def running_job(db, settings):
    settings.TRAINING_MAX_ATTEMPTS = 3
    model = AIModelFactory()
    return TrainingJobFactory(
        model=model,
        dataset=model.default_dataset,
        status=JobStatus.RUNNING,
        attempts=1,
        worker=f"{socket.gethostname()}:{dead_pid()}",
        heartbeat_at=timezone.now(),
    )


def test_reaper_requeues_a_job_whose_worker_process_is_gone(running_job):
    assert training_jobs_reap() == [(running_job.pk, "requeued")]
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.QUEUED and running_job.worker == ""
    assert "lost" in running_job.error


def test_reaper_fails_a_job_out_of_attempts(running_job):
    TrainingJob.objects.filter(pk=running_job.pk).update(attempts=3)
    assert training_jobs_reap() == [(running_job.pk, "failed")]
    running_job.refresh_from_db()
    assert (running_job.status, running_job.error_code) == (JobStatus.FAILED, "worker_lost")


def test_reaper_ends_a_stopping_job_whose_worker_is_gone(running_job):
    TrainingJob.objects.filter(pk=running_job.pk).update(status=JobStatus.STOPPING)
    assert training_jobs_reap() == [(running_job.pk, "stopped")]
    assert TrainingJob.objects.get(pk=running_job.pk).status == JobStatus.STOPPED


def test_reaper_leaves_a_live_worker_alone(running_job):
    import os

    TrainingJob.objects.filter(pk=running_job.pk).update(worker=f"{socket.gethostname()}:{os.getpid()}")
    assert training_jobs_reap() == []


def test_reaper_uses_the_heartbeat_for_workers_on_other_hosts(running_job, settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT_S = 60
    TrainingJob.objects.filter(pk=running_job.pk).update(worker="other-host:123")
    assert training_jobs_reap() == []
    TrainingJob.objects.filter(pk=running_job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    assert training_jobs_reap() == [(running_job.pk, "requeued")]


def test_version_numbers_go_up_by_minor(db):
    model = AIModelFactory()
    assert next_version_number(model.pk) == "v1.0.0"
    for name in ("v1.0.0", "v1.4.0", "v1.2.3", "experimental"):
        ModelVersionFactory(model=model, version=name)
    assert next_version_number(model.pk) == "v1.5.0"


def test_deleting_a_model_removes_its_artifacts(api, sp500_model):
    outcome = training_job_execute(job_id=start(api, sp500_model, QUICK))
    version = ModelVersion.objects.get(version=outcome.version)
    artifact = version.artifact_path
    job_dir = TrainingJob.objects.get(model=sp500_model).uid
    from pathlib import Path

    from django.conf import settings

    assert Path(artifact).is_dir() and (Path(settings.ARTIFACTS_DIR) / "jobs" / str(job_dir)).is_dir()
    assert api(sp500_model.owner).delete(f"/api/model-management/models/{sp500_model.name}").status_code == 204
    assert not Path(artifact).exists()
    assert not (Path(settings.ARTIFACTS_DIR) / "jobs" / str(job_dir)).exists()


def test_a_start_survives_a_broker_outage_and_the_reaper_enqueues_it_later(api, sp500_model, monkeypatch):
    import django_q.tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(django_q.tasks, "async_task", broker_down)
    response = api(sp500_model.owner).post(
        f"/api/model-management/models/{sp500_model.name}/fine-tune", QUICK, format="json"
    )
    assert response.status_code == 202  # the job is committed; the outage is not the client's error
    job = TrainingJob.objects.get(pk=response.data["id"])
    assert job.status == JobStatus.QUEUED and job.enqueued_at is None
    monkeypatch.undo()
    TrainingJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    assert (job.pk, "enqueued") in training_jobs_reap()
    assert TrainingJob.objects.get(pk=job.pk).enqueued_at is not None
    assert training_jobs_reap() == []  # handed over once


def test_reaper_requeues_a_stuck_job_even_if_its_worker_process_lives(running_job, settings):
    """A live process whose heartbeat went stale (e.g. its database connection died) is stuck."""
    import os

    settings.TRAINING_HEARTBEAT_TIMEOUT_S = 60
    me = f"{socket.gethostname()}:{os.getpid()}"
    TrainingJob.objects.filter(pk=running_job.pk).update(worker=me, heartbeat_at=timezone.now())
    assert training_jobs_reap() == []
    TrainingJob.objects.filter(pk=running_job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    assert training_jobs_reap() == [(running_job.pk, "requeued")]


def test_a_reaped_worker_writes_nothing_more(running_job):
    original = running_job.worker
    TrainingJob.objects.filter(pk=running_job.pk).update(worker="another-host:42")  # taken over
    training_job_finish(running_job.pk, JobStatus.FAILED, original, error_code="training_error", error="late")
    assert TrainingJob.objects.get(pk=running_job.pk).status == JobStatus.RUNNING
    progress = JobProgress(job_id=running_job.pk, worker=original)
    progress.emit()
    assert progress.taken_over.is_set() and progress.should_stop()
