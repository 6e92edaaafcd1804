"""(d) 100 tiny jobs over 10 models, submitted concurrently, drain with none lost or run twice.

Ten submitter threads, one per model, start jobs for their model as fast as the service lets
them: one live job per model, so a start is accepted (202) or refused (409 `job_in_progress`) and
retried until the model's current job ends. Two workers drain the queue.
"""

from __future__ import annotations

import time

import pytest

from models_mgmt.choices import TERMINAL_JOB_STATUSES, JobStatus
from models_mgmt.models import ModelVersion, TrainingJob

from .conftest import (
    JOBS_PER_MODEL,
    MODELS,
    assert_job_seqs_gap_free,
    status_events,
    submit_all,
    trainer_with_model,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_a_hundred_jobs_drain_each_run_exactly_once(live):
    pairs = [trainer_with_model(f"drain-{i}") for i in range(MODELS)]
    processes = live(TRAINING_WORKERS="2", TRAINING_HEARTBEAT_TIMEOUT_S="120")
    processes.qcluster()
    deadline = time.monotonic() + 360
    accepted, refusals = submit_all(pairs, deadline)
    assert len(accepted) == MODELS * JOBS_PER_MODEL, (len(accepted), processes.output()[-3000:])
    assert len(set(accepted)) == len(accepted)

    wait_for(
        lambda: not TrainingJob.objects.exclude(status__in=TERMINAL_JOB_STATUSES).exists(),
        max(deadline - time.monotonic(), 30),
        "every job to end",
        processes.output,
    )
    jobs = list(TrainingJob.objects.select_related("version").order_by("pk"))
    assert [j.pk for j in jobs] == sorted(accepted)  # nothing lost, nothing extra
    failed = [(j.pk, j.status, j.error_code, j.error) for j in jobs if j.status != JobStatus.SUCCEEDED]
    assert not failed, (failed, processes.output()[-3000:])
    assert all(j.attempts == 1 for j in jobs), [(j.pk, j.attempts) for j in jobs if j.attempts != 1]
    for job in jobs:
        assert status_events(job.pk) == ["queued", "running", "succeeded"], job.pk
        assert_job_seqs_gap_free(job.pk)
    for _, model in pairs:
        versions = list(ModelVersion.objects.filter(model=model).values_list("version", flat=True))
        assert sorted(versions, key=lambda v: int(v.split(".")[1])) == [f"v1.{i}.0" for i in range(JOBS_PER_MODEL)]
        mine = [j for j in jobs if j.model_id == model.pk]
        assert len({j.version_id for j in mine}) == JOBS_PER_MODEL
    # Each model's jobs ran one after another: the 409s did the waiting.
    assert sum(refusals.values()) > 0
