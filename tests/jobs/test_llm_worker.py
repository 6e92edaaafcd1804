"""An llm-lora job run by a real qcluster process, whose worker is killed (SIGKILL) mid-run: the
reaper requeues it and it resumes from its checkpoint to a version."""

from __future__ import annotations

import os
import signal

import pytest

from models_mgmt.choices import JobStatus, Role
from models_mgmt.models import ProgressEvent, TrainingJob
from models_mgmt.services import ai_model_create
from models_mgmt.services.base_models import base_model_register
from tests.factories import UserFactory, grant

from .conftest import job_finished, wait_for

pytestmark = pytest.mark.slow

BODY = {
    "startDate": "2016-01-01",
    "endDate": "2016-09-30",
    "validationSplit": 0.1,
    "epochs": 6,
    "learningRate": 0.01,
    "batchSize": 4,
    "trainingDataSize": 16,
    "earlyStoppingPatience": 0,
    "hyperparameters": {"loraRank": 4, "loraAlpha": 8, "checkpointSteps": 2},
}


def test_a_killed_llm_worker_resumes_from_its_checkpoint(cluster, api, trainer_and_model, tiny_base_dir):
    trainer, mlp = trainer_and_model
    owner = UserFactory(role=Role.MAINTAINER)
    base_model_register(actor=owner, name="tiny-llama", path=str(tiny_base_dir), ollama_tag="tiny-llama:latest")
    model = ai_model_create(
        actor=owner, name="llm-worker", family="llm-lora", base_model="tiny-llama", default_dataset=mlp.default_dataset
    )
    grant(trainer, model, Role.TRAINER)
    response = api(trainer).post(f"/api/model-management/models/{model.name}/fine-tune", BODY, format="json")
    assert response.status_code == 202, response.data
    job_id = response.data["id"]

    def in_second_epoch():
        job = TrainingJob.objects.get(pk=job_id)
        return job if job.status == JobStatus.RUNNING and job.epoch >= 2 and job.worker else None

    job = wait_for(in_second_epoch, 300, "the llm job to reach its second epoch", cluster.output)
    os.kill(int(job.worker.rpartition(":")[2]), signal.SIGKILL)
    job = wait_for(job_finished(job_id), 400, "the job to end after the kill", cluster.output)
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error, cluster.output()[-3000:])
    assert job.attempts == 2 and job.epochs.count() == 6
    assert job.version.metadata["family"] == "llm-lora"
    # the second attempt went on from the checkpoint: its progress never shows epoch 1 again
    events = list(ProgressEvent.objects.filter(job_id=job_id).order_by("seq"))
    starts = [i for i, e in enumerate(events) if e.type == "job.status" and e.payload["status"] == "running"]
    assert len(starts) == 2
    resumed = [e.payload["epoch"] for e in events[starts[1] :] if e.type == "job.progress"]
    assert resumed and min(resumed) >= 2
