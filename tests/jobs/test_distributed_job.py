"""Where a job trains, through the worker wrapper (in-process, committed rows): the claiming worker
resolves the config's device and ranks on its own machine, records the device, fails what it cannot
honour (`device_unavailable`), launches a torchrun group for `distributed` (rank 0 reports,
checkpoints and writes the artifact; the version registers as any other) and maps a group that
failed past its restarts to `distributed_error`."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from models_mgmt.artifacts import job_work_dir
from models_mgmt.choices import JobStatus
from models_mgmt.engine.checkpoint import CHECKPOINT_NAME
from models_mgmt.engine.ddp_main import DDP_DIR
from models_mgmt.engine.distributed import DistributedError
from models_mgmt.engine.metering import usable_cpus
from models_mgmt.models import ModelVersion, ProgressEvent, TrainingEpoch, TrainingJob
from models_mgmt.services import training_job_stop
from models_mgmt.training import worker
from models_mgmt.training.progress import JobProgress
from models_mgmt.training.worker import training_job_execute
from tests.jobs.helpers import start
from tests.live import processes_naming, wait_until_gone

QUICK = {"epochs": 2, "startDate": "2016-01-01"}
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def failed_without_a_version(job_id: int, code: str) -> TrainingJob:
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == JobStatus.FAILED and job.error_code == code, (job.error_code, job.error)
    assert job.version is None and not ModelVersion.objects.filter(model=job.model).exists()
    assert job.finished_at is not None
    return job


def test_an_in_process_job_records_its_device(api, sp500_model):
    job_id = start(api, sp500_model, {**QUICK, "device": "auto"})
    outcome = training_job_execute(job_id=job_id)
    assert outcome.status == JobStatus.SUCCEEDED, TrainingJob.objects.get(pk=job_id).error
    job = TrainingJob.objects.get(pk=job_id)
    assert job.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert job.version.version == outcome.version


def test_an_in_process_cpu_job_records_cpu(api, sp500_model):
    job_id = start(api, sp500_model, {**QUICK, "device": "cpu"})
    assert training_job_execute(job_id=job_id).status == JobStatus.SUCCEEDED
    assert TrainingJob.objects.get(pk=job_id).device == "cpu"
    detail = api(sp500_model.owner).get(f"/api/model-management/jobs/{job_id}").data
    assert detail["device"] == "cpu" and detail["config"]["device"] == "cpu"
    assert os.listdir(job_work_dir(TrainingJob.objects.get(pk=job_id))) == [CHECKPOINT_NAME]  # as a group's


@needs_no_gpu
def test_cuda_on_a_machine_without_a_gpu_fails_at_once(api, sp500_model):
    job_id = start(api, sp500_model, {**QUICK, "device": "cuda"})
    assert training_job_execute(job_id=job_id).status == JobStatus.FAILED
    job = failed_without_a_version(job_id, "device_unavailable")
    assert "no usable GPU" in job.error and "'auto'" in job.error
    assert job.device == "" and job.epoch == 0 and not TrainingEpoch.objects.filter(job_id=job_id).exists()
    final = ProgressEvent.objects.filter(job_id=job_id).order_by("-seq").first().payload
    assert final["status"] == "failed" and final["errorCode"] == "device_unavailable"


def test_more_cpu_ranks_than_the_worker_may_use_fail_at_once(api, sp500_model):
    ranks = usable_cpus() + 1
    if ranks > 64:
        pytest.skip("this machine may use more CPUs than a job may ask ranks")
    body = {**QUICK, "device": "cpu", "batchSize": 8 * ranks, "distributed": {"nprocPerNode": ranks}}
    job_id = start(api, sp500_model, body)
    assert training_job_execute(job_id=job_id).status == JobStatus.FAILED
    job = failed_without_a_version(job_id, "device_unavailable")
    assert f"{ranks} CPU ranks" in job.error and "lower nprocPerNode" in job.error
    assert job.device == ""


def test_a_group_that_failed_past_its_restarts_fails_the_job_with_its_reason(api, sp500_model, monkeypatch, settings):
    """The mapping only: the group's failure is the engine's (tests/engine/test_distributed.py)."""
    settings.DISTRIBUTED_MAX_RESTARTS = 3
    seen = {}
    log = "\n".join(f"[rank1] log line {n}" for n in range(400))

    def failing_group(spec, **kwargs):
        seen.update(kwargs)
        raise DistributedError(f"the torchrun group failed after 3 restarts (rank 1 exited with 1)\n{log}")

    monkeypatch.setattr(worker, "run_distributed", failing_group)
    job_id = start(api, sp500_model, {**QUICK, "device": "cpu", "distributed": {"nprocPerNode": 2}})
    assert training_job_execute(job_id=job_id).status == JobStatus.FAILED
    job = failed_without_a_version(job_id, "distributed_error")
    assert job.error.startswith("the torchrun group failed after 3 restarts")
    assert job.error.endswith("[rank1] log line 399") and len(job.error) <= 2000  # torchrun's last lines kept
    assert job.device == "cpu x2 gloo"
    assert seen["max_restarts"] == 3 and seen["device"] == "cpu"
    assert seen["distributed"].nproc_per_node == 2 and seen["on_gpus"] is not None
    assert seen["work_dir"].name == str(job.uid) and seen["resume_from"] is None


@pytest.mark.slow
def test_two_cpu_ranks_train_a_job_to_a_registered_version(api, sp500_model):
    if usable_cpus() < 2:
        pytest.skip("needs 2 usable CPUs")
    job_id = start(api, sp500_model, {**QUICK, "device": "cpu", "batchSize": 32, "distributed": {"nprocPerNode": 2}})
    outcome = training_job_execute(job_id=job_id)
    job = TrainingJob.objects.get(pk=job_id)
    assert outcome.status == JobStatus.SUCCEEDED, (job.error_code, job.error)
    assert job.device == "cpu x2 gloo" and job.progress == 100.0
    version = ModelVersion.objects.get(model=sp500_model, version=outcome.version)
    assert job.version == version and 0.0 <= version.accuracy <= 1.0
    lineage = version.metadata["lineage"]
    assert lineage["config"]["distributed"] == {"nprocPerNode": 2, "nnodes": 1, "rdzvEndpoint": None}
    # rank 0's reports reached the job as an in-process run's do: every epoch once, a live feed
    assert list(TrainingEpoch.objects.filter(job_id=job_id).values_list("epoch", flat=True)) == [1, 2]
    progress = ProgressEvent.objects.filter(job_id=job_id, type="job.progress")
    assert any(e.payload["loss"] is not None for e in progress)
    assert job.cost.wall_seconds > 0
    # The group's folder served this run only: gone, and the job's work dir and the version's
    # artifact are what an in-process run leaves (test_an_in_process_cpu_job_records_cpu).
    work_dir = job_work_dir(job)
    assert not (work_dir / DDP_DIR).exists() and os.listdir(work_dir) == [CHECKPOINT_NAME]
    artifact = Path(version.artifact_path)
    assert artifact.is_dir() and not artifact.is_relative_to(work_dir) and any(artifact.iterdir())


def ranks_alive(work_dir) -> list[int]:
    """This job's torchrun and ranks still running (their command lines name its work dir and ddp_main)."""
    return processes_naming(work_dir, b"ddp_main")


@pytest.mark.slow
def test_a_worker_shutdown_requeues_the_group_and_the_next_attempt_resumes_it_until_a_stop(api, sp500_model):
    """Shutdown (SIGTERM of the worker) and stop reach every rank through the worker's progress, as
    for an in-process job; the next attempt resumes from the group's checkpoint, not from scratch."""
    if usable_cpus() < 2:
        pytest.skip("needs 2 usable CPUs")
    # Many epochs and no early stop: the run is still training whenever the stop arrives.
    body = {"epochs": 200, "earlyStoppingPatience": 0, "startDate": "2016-01-01", "batchSize": 32}
    job_id = start(api, sp500_model, {**body, "device": "cpu", "distributed": {"nprocPerNode": 2}})
    work_dir = job_work_dir(TrainingJob.objects.get(pk=job_id))
    running: list[int] = []

    class ShutdownAfterEpoch2(JobProgress):
        def on_epoch(self, report):
            super().on_epoch(report)
            if report.epoch == 2:
                running.extend(ranks_alive(work_dir))  # torchrun and its two ranks
                self.shutdown.set()  # what the worker's SIGTERM handler does

    assert training_job_execute(job_id=job_id, progress=ShutdownAfterEpoch2(job_id=job_id)).status == JobStatus.QUEUED
    job = TrainingJob.objects.get(pk=job_id)
    assert len(running) >= 3
    assert job.status == JobStatus.QUEUED and job.attempts == 0  # a shutdown is not a failed attempt
    assert (work_dir / "checkpoint.pt").exists() and wait_until_gone(work_dir, b"ddp_main") == []
    first_run = max(TrainingEpoch.objects.filter(job_id=job_id).values_list("epoch", flat=True))
    assert 2 <= first_run < 200

    resumed: list[int] = []

    class StopAtFirstEpoch(JobProgress):
        def on_epoch(self, report):
            super().on_epoch(report)
            resumed.append(report.epoch)
            if len(resumed) == 1:
                training_job_stop(actor=sp500_model.owner, model=sp500_model)  # POST fine-tune/stop

    assert training_job_execute(job_id=job_id, progress=StopAtFirstEpoch(job_id=job_id)).status == JobStatus.STOPPED
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == JobStatus.STOPPED and job.attempts == 1 and job.device == "cpu x2 gloo"
    assert 2 <= resumed[0] <= first_run + 1 and resumed[-1] < 200  # from the checkpoint, then stopped
    epochs = list(TrainingEpoch.objects.filter(job_id=job_id).values_list("epoch", flat=True))
    assert epochs == list(range(1, max(epochs) + 1))  # every epoch once, none lost between the attempts
    assert not ModelVersion.objects.filter(model=sp500_model).exists()
    assert wait_until_gone(work_dir, b"ddp_main") == []


@pytest.mark.slow
def test_a_group_that_cannot_start_fails_the_job_with_torchruns_reason(api, sp500_model, settings):
    """A real failure: the rendezvous endpoint names a port this worker cannot host (taken)."""
    settings.DISTRIBUTED_MAX_RESTARTS = 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = f"127.0.0.1:{taken.getsockname()[1]}"
        distributed = {"nprocPerNode": 1, "rdzvEndpoint": endpoint}
        job_id = start(api, sp500_model, {**QUICK, "device": "cpu", "distributed": distributed})
        assert training_job_execute(job_id=job_id).status == JobStatus.FAILED
    job = failed_without_a_version(job_id, "distributed_error")
    assert "torchrun" in job.error and "Rendezvous" in job.error
    assert job.device == "cpu x1 gloo"
    assert wait_until_gone(job_work_dir(job), b"ddp_main") == []
