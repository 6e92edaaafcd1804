"""What a finished job records and says: losses it measured, no silent copy of its parent, and a
feed that names every phase and ends with final numbers (issue 11, items 1 and 4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from models_mgmt.choices import JobStatus
from models_mgmt.models import ModelVersion, ProgressEvent, TrainingJob
from models_mgmt.realtime.events import JOB_PHASES
from models_mgmt.training.worker import training_job_execute
from tests.jobs.helpers import start

QUICK = {"epochs": 2, "startDate": "2016-01-01"}


@pytest.fixture
def model(sp500_model):
    return sp500_model


def weights_digest(version: ModelVersion) -> str:
    return hashlib.sha256(Path(version.artifact_path, "weights.safetensors").read_bytes()).hexdigest()


def test_the_recorded_loss_is_one_the_job_measured(api, model):
    job_id = start(api, model, {**QUICK, "earlyStoppingPatience": 0})
    assert training_job_execute(job_id=job_id).status == JobStatus.SUCCEEDED
    job = TrainingJob.objects.get(pk=job_id)
    metadata = job.version.metadata
    assert metadata["lossKind"] == "validation" and metadata["lossEpoch"] == metadata["bestEpoch"] >= 1
    epoch = job.epochs.get(epoch=metadata["bestEpoch"])
    assert metadata["loss"] == epoch.val_loss and metadata["trainLoss"] == epoch.train_loss
    assert isinstance(metadata["startValLoss"], float) and isinstance(metadata["improvedOnStart"], bool)


def test_a_fine_tune_never_registers_its_parents_weights_again(api, model):
    """Regression: 300 epochs, patience 0 and a window on which no epoch beat the base registered
    v1.2.0 with v1.1.0's exact weights and loss. Now the kept weights are a trained epoch's."""
    training_job_execute(job_id=start(api, model, {"epochs": 30, "earlyStoppingPatience": 5, "endDate": "2012-12-31"}))
    api(model.owner).post(f"/api/model-management/models/{model.name}/versions/v1.0.0/activate")
    job_id = start(api, model, {**QUICK, "learningRate": 1.0, "earlyStoppingPatience": 0})
    assert training_job_execute(job_id=job_id).status == JobStatus.SUCCEEDED
    parent, child = (ModelVersion.objects.get(model=model, version=v) for v in ("v1.0.0", "v1.1.0"))
    assert weights_digest(child) != weights_digest(parent)
    assert child.metadata["bestEpoch"] >= 1 and child.parent == parent
    assert child.metadata["improvedOnStart"] == (child.metadata["loss"] < child.metadata["startValLoss"])
    final = ProgressEvent.objects.filter(job_id=job_id).order_by("-seq").first().payload
    assert final["outcome"]["improvedOnStart"] == child.metadata["improvedOnStart"]


def test_a_run_that_changes_no_weight_fails_without_a_version(api, model):
    training_job_execute(job_id=start(api, model, QUICK))
    api(model.owner).post(f"/api/model-management/models/{model.name}/versions/v1.0.0/activate")
    # A learning rate this small moves no float32 weight: the result would be v1.0.0 again.
    job_id = start(api, model, {**QUICK, "learningRate": 1e-30, "hyperparameters": {"weightDecay": 0}})
    assert training_job_execute(job_id=job_id).status == JobStatus.FAILED
    job = TrainingJob.objects.get(pk=job_id)
    assert job.error_code == "no_change" and "v1.0.0" in job.error
    assert list(ModelVersion.objects.filter(model=model).values_list("version", flat=True)) == ["v1.0.0"]


def test_the_feed_names_each_phase_in_order_and_ends_with_final_numbers(api, model):
    job_id = start(api, model, {**QUICK, "epochs": 20, "earlyStoppingPatience": 0})
    assert training_job_execute(job_id=job_id).status == JobStatus.SUCCEEDED
    events = [e.payload for e in ProgressEvent.objects.filter(job_id=job_id).order_by("seq")]
    phases = [e["phase"] for e in events]
    assert all(p in JOB_PHASES for p in phases)
    order = [JOB_PHASES.index(p) for p in phases]
    assert order == sorted(order)  # never backwards, never a phase again once left
    # Every phase gets an event of its own, however short it was (an idle machine trains these 20
    # epochs in less than the 0.25 s gap between events): none is passed over.
    assert {"queued", "loading_data", "training", "finished"} <= set(phases)
    assert list(dict.fromkeys(phases)) == list(JOB_PHASES)
    assert phases[0] == "queued" and phases[-1] == "finished"
    final = events[-1]
    assert final["status"] == "succeeded" and final["progress"] == 100
    assert final["epoch"] == final["totalEpochs"] == 20 and final["eta"] is None
    alive = [e for e in events if e["status"] == "running"]
    assert all(e["progress"] < 100 for e in alive)
