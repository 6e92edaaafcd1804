"""Jobs run by a real qcluster process: success, stop, a killed worker, a SIGTERM'd worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from models_mgmt.choices import JobStatus
from models_mgmt.engine.metering import usable_cpus
from models_mgmt.models import JobCost, ModelVersion, TrainingJob
from models_mgmt.training.reaper import _worker_alive

from .conftest import job_finished, wait_for

pytestmark = pytest.mark.slow

# ~1500 bars keep a run to seconds; a small batch and no early stopping make epochs long enough
# to interrupt in the middle.
QUICK = {"epochs": 4, "startDate": "2013-01-01"}
LONG = {"epochs": 400, "batchSize": 8, "earlyStoppingPatience": 0, "startDate": "2013-01-01"}


def start(api, trainer, model, body):
    response = api(trainer).post(f"/api/model-management/models/{model.name}/fine-tune", body, format="json")
    assert response.status_code == 202, response.data
    return response.data["id"]


def running_with_epochs(job_id: int, epochs: int):
    """Running, with `epochs` epochs *finished* (their rows written). `job.epoch` is the epoch in
    progress: waiting on it let a stop land inside epoch 1, before any checkpoint existed, which is
    why the stop test once found no checkpoint.pt (issue 11.12: the test raced, not the writer)."""

    def check():
        job = TrainingJob.objects.get(pk=job_id)
        finished = job.epochs.count()
        return job if job.status == JobStatus.RUNNING and finished >= epochs and job.worker else None

    return check


def test_a_job_trains_a_version_with_real_metrics(cluster, api, trainer_and_model):
    trainer, model = trainer_and_model
    job_id = start(api, trainer, model, QUICK)
    job = wait_for(job_finished(job_id), 180, "the job to finish", cluster.output)
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error, cluster.output()[-3000:])
    assert job.attempts == 1 and job.progress == 100
    assert job.epochs.count() == 4
    version = job.version
    assert version.version == "v1.0.0" and version.status == "ready"
    for key in ("patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"):
        assert 0 <= version.performance_metrics[key] <= 1
        assert 0 <= version.baselines[key] <= 1
    assert version.accuracy == version.performance_metrics["overallScore"]
    assert version.response_time_ms > 0
    assert {"cumulativeReturn", "sharpe", "maxDrawdown", "hitRate", "trades", "buyHoldReturn"} <= set(version.backtest)
    assert version.metadata["trainWindow"][0] >= "2013-01-01"
    assert version.metadata["lineage"]["dataset"] == "sp500"
    assert Path(version.artifact_path, "model.onnx").exists() or any(Path(version.artifact_path).glob("*.onnx"))
    response = api(trainer).get(f"/api/model-management/models/{model.name}/versions")
    assert [v["version"] for v in response.data["results"]] == ["v1.0.0"]
    cost = JobCost.objects.get(job=job)  # measured in the worker process
    assert cost.final and 0 < cost.cpu_seconds <= cost.wall_seconds * usable_cpus() and cost.peak_rss_bytes > 0
    assert cost.units == version.training_data_size * version.metadata["epochs"]


def test_stop_ends_a_running_job_without_a_version_and_keeps_the_checkpoint(cluster, api, trainer_and_model):
    trainer, model = trainer_and_model
    job_id = start(api, trainer, model, LONG)
    wait_for(running_with_epochs(job_id, 1), 120, "the job to run an epoch", cluster.output)
    response = api(trainer).post(f"/api/model-management/models/{model.name}/fine-tune/stop")
    assert response.status_code == 200 and response.data["status"] == "stopping"
    job = wait_for(job_finished(job_id), 60, "the worker to stop the job", cluster.output)
    assert job.status == JobStatus.STOPPED
    assert job.version is None and not ModelVersion.objects.filter(model=model).exists()
    assert job.epoch < 400
    assert (cluster.artifacts / "jobs" / str(job.uid) / "checkpoint.pt").exists()


def test_a_killed_worker_never_leaves_the_job_running(cluster, api, trainer_and_model):
    trainer, model = trainer_and_model
    body = {**LONG, "epochs": 12}
    job_id = start(api, trainer, model, body)
    job = wait_for(running_with_epochs(job_id, 2), 120, "the job to run two epochs", cluster.output)
    epochs_before = job.epochs.count()
    os.kill(int(job.worker.rpartition(":")[2]), signal.SIGKILL)
    # Once the process is gone (or a zombie) nothing of it can still commit: its last heartbeat stands.
    wait_for(lambda: _worker_alive(job.worker) is False, 30, "the killed worker to be gone", cluster.output)
    heartbeat = JobCost.objects.get(job=job)
    assert heartbeat.wall_seconds > 0
    job = wait_for(job_finished(job_id), 240, "the job to end after the kill", cluster.output)
    cost = JobCost.objects.get(job=job)
    assert cost.final
    if job.status == JobStatus.FAILED:  # reaped: costed from the last heartbeat
        assert (cost.wall_seconds, cost.cpu_seconds) == (heartbeat.wall_seconds, heartbeat.cpu_seconds)
    else:  # resumed: the second attempt adds to what the first used
        assert cost.wall_seconds > heartbeat.wall_seconds and cost.cpu_seconds > heartbeat.cpu_seconds
    if job.status == JobStatus.SUCCEEDED:
        assert job.attempts == 2  # resumed once, from its checkpoint
        assert job.epochs.count() == 12
        assert job.epochs.filter(epoch__lte=epochs_before).count() == epochs_before
    else:
        assert (job.status, job.error_code) == (JobStatus.FAILED, "worker_lost")


def test_sigterm_checkpoints_and_requeues_the_job(cluster, api, trainer_and_model):
    trainer, model = trainer_and_model
    job_id = start(api, trainer, model, {**LONG, "epochs": 12})
    job = wait_for(running_with_epochs(job_id, 1), 120, "the job to run an epoch", cluster.output)
    os.kill(int(job.worker.rpartition(":")[2]), signal.SIGTERM)
    job = wait_for(job_finished(job_id), 240, "the requeued job to finish", cluster.output)
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error)
    assert job.attempts == 1  # a shutdown is not a failed attempt
    assert "job.requeued" in set(job.model.audit_events.values_list("action", flat=True))
