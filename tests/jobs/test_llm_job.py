"""A whole llm-lora job through the worker wrapper (in-process, committed rows): progress on the
feed, a version whose adapter overfits its small training set, stop, kill + reaper + resume."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import socket
import subprocess
import sys
import tarfile

import pytest
import torch

from models_mgmt.choices import JobStatus, Role
from models_mgmt.models import AuditEvent, JobCost, ModelVersion, ProgressEvent, TrainingEpoch, TrainingJob
from models_mgmt.realtime.events import JOB_PHASES
from models_mgmt.services import ai_model_create, dataset_import_builtin, training_job_stop
from models_mgmt.services.base_models import base_model_register
from models_mgmt.training.progress import JobProgress
from models_mgmt.training.reaper import training_jobs_reap
from models_mgmt.training.worker import training_job_execute
from tests.factories import AIModelFactory, UserFactory, grant

API = "/api/model-management/models"
WINDOW = {"startDate": "2016-01-01", "endDate": "2016-09-30", "validationSplit": 0.1}
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OVERFIT = {
    **WINDOW,
    "epochs": 12,
    "learningRate": 0.02,
    "batchSize": 8,
    "trainingDataSize": 16,
    "earlyStoppingPatience": 0,
    "hyperparameters": {"loraRank": 8, "loraAlpha": 16, "loraDropout": 0.0, "targetModules": ALL_PROJECTIONS},
}
SHORT = {
    **WINDOW,
    "epochs": 3,
    "learningRate": 0.01,
    "batchSize": 4,
    "trainingDataSize": 16,
    "earlyStoppingPatience": 0,
    "hyperparameters": {"loraRank": 4, "loraAlpha": 8, "checkpointSteps": 3},
}


class Killed(BaseException):
    """Stands in for SIGKILL: no handler of the worker catches it."""


@pytest.fixture
def llm(transactional_db, settings, tmp_path, tiny_base_dir):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    owner = UserFactory(role=Role.MAINTAINER)
    dataset = dataset_import_builtin(name="sp500")
    base_model_register(actor=owner, name="tiny-llama", path=str(tiny_base_dir), ollama_tag="tiny-llama:latest")
    model = ai_model_create(
        actor=owner, name="llama3.1:8b", family="llm-lora", base_model="tiny-llama", default_dataset=dataset
    )
    return model


def start(api, model, body) -> int:
    response = api(model.owner).post(f"{API}/{model.name}/fine-tune", body, format="json")
    assert response.status_code == 202, response.data
    return response.data["id"]


def test_a_whole_job_overfits_its_training_set_and_delivers_an_artifact(api, llm):
    job_id = start(api, llm, OVERFIT)
    outcome = training_job_execute(job_id=job_id)
    assert outcome.status == JobStatus.SUCCEEDED, TrainingJob.objects.get(pk=job_id).error
    version = ModelVersion.objects.get(model=llm, version=outcome.version)
    # where it trained is recorded as for the MLP family (the machine's GPU when it has one)
    assert TrainingJob.objects.get(pk=job_id).device == ("cuda:0" if torch.cuda.is_available() else "cpu")

    # live progress: the worker's clock emitted events carrying the trainer's step reports, and
    # the feed names the job's phases in order, as for the MLP family (a phase shorter than the
    # 0.25 s gap between events can be passed over; these never are)
    progress = ProgressEvent.objects.filter(job_id=job_id, type="job.progress")
    assert progress.count() >= 2 and any(e.payload["loss"] is not None for e in progress)
    assert TrainingEpoch.objects.filter(job_id=job_id).count() == 12
    phases = [e.payload["phase"] for e in ProgressEvent.objects.filter(job_id=job_id).order_by("seq")]
    assert [JOB_PHASES.index(p) for p in phases] == sorted(JOB_PHASES.index(p) for p in phases)
    assert {"queued", "loading_data", "training", "finished"} <= set(phases)
    assert phases[0] == "queued" and phases[-1] == "finished"

    # the product's metrics, beside the MLP family's baselines and backtest
    assert all(0.0 <= value <= 1.0 for value in version.performance_metrics.values())
    assert set(version.baselines) == set(version.performance_metrics) and "sharpe" in version.backtest
    assert version.accuracy == version.performance_metrics["overallScore"]
    meta = version.metadata
    assert meta["family"] == "llm-lora" and meta["trainSamples"] == 16
    cost = JobCost.objects.get(job_id=job_id)  # a language model's work is counted in tokens
    assert cost.final and (cost.units, cost.unit_kind) == (meta["tokensSeen"], "tokens") and cost.units > 0
    assert meta["bestEpoch"] >= 1 and meta["improvedOnStart"] is True  # the adapter beat the untouched base
    assert meta["loss"] < meta["startValLoss"]
    # it learned its 16 examples: chance is 0.5 per task
    assert meta["trainingMetrics"]["overallScore"] >= 0.8, meta["trainingMetrics"]
    lineage = meta["lineage"]
    assert lineage["baseModel"] == "tiny-llama" and lineage["ollamaTag"] == "tiny-llama:latest"
    assert lineage["baseModelFiles"]["model.safetensors"] and lineage["seed"] == 42
    assert lineage["dataWindow"]["validation"] == meta["validationWindow"]
    assert lineage["config"]["hyperparameters"]["targetModules"] == ALL_PROJECTIONS

    # the artifact, downloaded: adapter, Modelfile, template, every checksum valid
    response = api(llm.owner).get(f"{API}/{llm.name}/versions/{version.version}/artifact")
    assert response.status_code == 200
    root = f"llama3.1-8b-{version.version}"
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz") as tar:
        manifest = json.loads(tar.extractfile(f"{root}/manifest.json").read())
        for name, digest in manifest["files"].items():
            assert hashlib.sha256(tar.extractfile(f"{root}/{name}").read()).hexdigest() == digest
        modelfile = tar.extractfile(f"{root}/Modelfile").read().decode()
    assert version.checksum == manifest["checksum"]
    assert "adapter/adapter_model.safetensors" in manifest["files"]
    assert "FROM tiny-llama:latest\nADAPTER ./adapter\n" in modelfile and 'PARAMETER stop "</s>"' in modelfile

    # an MLP trained on the same window is validated on the same bars: the versions compare
    mlp = AIModelFactory(name="mlp-twin", default_dataset=llm.default_dataset, owner=llm.owner)
    grant(llm.owner, mlp, Role.MAINTAINER)
    twin = ModelVersion.objects.get(
        version=training_job_execute(job_id=start(api, mlp, {**WINDOW, "epochs": 2})).version, model=mlp
    )
    assert twin.metadata["validationWindow"] == meta["validationWindow"]
    assert twin.metadata["validationSamples"] == meta["validationSamples"]
    assert set(twin.performance_metrics) == set(version.performance_metrics)


def test_a_stop_request_ends_the_run_within_a_step(api, llm):
    job_id = start(api, llm, {**SHORT, "epochs": 50})
    steps = []

    class StopAfterTwoSteps(JobProgress):
        def on_progress(self, report):
            super().on_progress(report)
            steps.append(report)
            if len(steps) == 2:
                training_job_stop(actor=llm.owner, model=llm)  # what POST fine-tune/stop does

    outcome = training_job_execute(job_id=job_id, progress=StopAfterTwoSteps(job_id=job_id))
    job = TrainingJob.objects.get(pk=job_id)
    assert outcome.status == JobStatus.STOPPED and job.status == JobStatus.STOPPED
    assert len(steps) < 50 * 4 and not ModelVersion.objects.filter(model=llm).exists()
    assert AuditEvent.objects.filter(action="job.stop_requested", object_id=str(job_id)).exists()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_worker_is_reaped_and_the_job_resumes_at_the_same_step(api, llm, settings):
    settings.TRAINING_MAX_ATTEMPTS = 3
    job_id = start(api, llm, SHORT)

    class KillAtStep7(JobProgress):
        def on_progress(self, report):
            super().on_progress(report)
            if (report.epoch - 1) * report.steps_per_epoch + report.step == 7:
                raise Killed

    with pytest.raises(Killed):
        training_job_execute(job_id=job_id, progress=KillAtStep7(job_id=job_id))
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == JobStatus.RUNNING  # nobody recorded an outcome: the process "died"
    TrainingJob.objects.filter(pk=job_id).update(worker=f"{socket.gethostname()}:{dead_pid()}")
    assert training_jobs_reap() == [(job_id, "requeued")]

    reports = []

    class Recording(JobProgress):
        def on_progress(self, report):
            super().on_progress(report)
            reports.append(report)

    outcome = training_job_execute(job_id=job_id, progress=Recording(job_id=job_id))
    assert outcome.status == JobStatus.SUCCEEDED
    # checkpointSteps=3 with 4 steps per epoch: the last checkpoint before step 7 was step 6
    assert (reports[0].epoch, reports[0].step) == (2, 3)
    job = TrainingJob.objects.get(pk=job_id)
    assert job.attempts == 2 and TrainingEpoch.objects.filter(job_id=job_id).count() == 3
    version = ModelVersion.objects.get(model=llm)
    assert version.metadata["epochs"] == 3


def test_the_cli_fine_tunes_an_llm_model(llm):
    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "finetune", llm.name, user=llm.owner.username, epochs=1, batch_size=4, training_data_size=8,
        start_date=dt.date(2016, 1, 1), end_date=dt.date(2016, 9, 30), validation_split=0.1, stdout=out,
    )  # fmt: skip
    version = ModelVersion.objects.get(model=llm)
    assert version.metadata["family"] == "llm-lora" and version.metadata["trainSamples"] == 8
    assert version.version in out.getvalue()
