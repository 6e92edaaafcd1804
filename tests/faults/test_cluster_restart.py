"""(a) The whole cluster dies mid-epoch (SIGKILL to its process group) and a new cluster starts.

tests/jobs/test_worker.py kills one worker and lets the same cluster replace it; here nothing of
the old cluster survives, so only the new cluster's reaper (run as its workers spawn) can find the
orphaned running job. It must end resumed or failed `worker_lost`, never stay running.
"""

from __future__ import annotations

import pytest

from models_mgmt.choices import JobStatus
from models_mgmt.models import ModelVersion

from .conftest import (
    LONG,
    assert_job_seqs_gap_free,
    job_finished,
    running_with_epochs,
    status_events,
    trainer_with_model,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_a_new_cluster_resumes_the_job_of_a_killed_cluster(live, api):
    trainer, model = trainer_with_model("cluster-restart")
    processes = live(TRAINING_WORKERS="2", TRAINING_HEARTBEAT_TIMEOUT_S="30")
    old_cluster = processes.qcluster()
    response = api(trainer).post(
        f"/api/model-management/models/{model.name}/fine-tune", {**LONG, "epochs": 10}, format="json"
    )
    assert response.status_code == 202, response.data
    job_id = response.data["id"]
    job = wait_for(running_with_epochs(job_id, 2), 180, "the job to run two epochs", processes.output)
    epochs_before, worker_before = job.epoch, job.worker

    processes.kill(old_cluster)  # sentinel, guard, pusher, monitor and both workers at once
    processes.qcluster()

    job = wait_for(job_finished(job_id), 300, "the job to end under the new cluster", processes.output)
    if job.status == JobStatus.SUCCEEDED:
        assert job.attempts == 2, (job.attempts, processes.output()[-3000:])  # resumed once
        assert job.worker != worker_before
        assert sorted(job.epochs.values_list("epoch", flat=True)) == list(range(1, 11))
        assert job.epochs.filter(epoch__lte=epochs_before).count() == epochs_before
        assert list(ModelVersion.objects.filter(model=model).values_list("version", flat=True)) == ["v1.0.0"]
    else:
        assert (job.status, job.error_code) == (JobStatus.FAILED, "worker_lost"), (
            job.error,
            processes.output()[-3000:],
        )
    assert_job_seqs_gap_free(job_id)
    statuses = status_events(job_id)
    assert statuses.count("running") == job.attempts
    assert statuses[-1] == job.status
    assert "job.requeued" in set(model.audit_events.values_list("action", flat=True))
