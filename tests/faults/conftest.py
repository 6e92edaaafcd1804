"""Fault tests: real daphne/qcluster processes killed and restarted while jobs run.

Every fixture here stops what it started (process groups, a private PostgreSQL) even when the
test fails.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import count

import pytest
from django.db import connection

from models_mgmt.api.serializers import FineTuningConfigSerializer
from models_mgmt.choices import JobStatus, Role
from models_mgmt.errors import Conflict
from models_mgmt.models import ProgressEvent, TrainingJob
from models_mgmt.services import dataset_import_builtin, training_job_start
from tests.factories import AIModelFactory, UserFactory, grant
from tests.live import LiveProcesses, job_finished, wait_for

__all__ = ["job_finished", "wait_for"]  # re-exported for the tests here

# ~1500 bars and a small batch: epochs long enough to interrupt in the middle.
LONG = {"batchSize": 8, "earlyStoppingPatience": 0, "startDate": "2013-01-01"}


@pytest.fixture
def live(transactional_db, tmp_path, settings) -> Iterator[Callable[..., LiveProcesses]]:
    """live(**env) -> a LiveProcesses on the test database; all of them are stopped at the end."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    made: list[LiveProcesses] = []
    numbers = count()

    def make(**env: str) -> LiveProcesses:
        processes = LiveProcesses(tmp_path / "artifacts", tmp_path / f"live-{next(numbers)}.log", **env)
        made.append(processes)
        return processes

    try:
        yield make
    finally:
        for processes in made:
            processes.stop()


def trainer_with_model(name: str) -> tuple:
    """A trainer and a model (on the real S&P 500 bars) that it may fine-tune."""
    model = AIModelFactory(name=name, default_dataset=dataset_import_builtin(name="sp500"))
    grant(model.owner, model, Role.MAINTAINER)
    trainer = UserFactory(role=Role.TRAINER)
    grant(trainer, model, Role.TRAINER)
    return trainer, model


def running_with_epochs(job_id: int, epochs: int) -> Callable[[], TrainingJob | None]:
    def check() -> TrainingJob | None:
        job = TrainingJob.objects.get(pk=job_id)
        return job if job.status == JobStatus.RUNNING and job.epoch >= epochs and job.worker else None

    return check


def assert_job_seqs_gap_free(job_id: int) -> list[int]:
    seqs = list(ProgressEvent.objects.filter(job_id=job_id).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)), f"job {job_id}: seqs {seqs}"
    return seqs


def status_events(job_id: int) -> list[str]:
    """The statuses the job's `job.status` events report, in seq order."""
    payloads = ProgressEvent.objects.filter(job_id=job_id, type="job.status").order_by("seq")
    return [p["status"] for p in payloads.values_list("payload", flat=True)]


# The hundred-job drains (test_many_jobs.py, test_worker_hosts.py): ten models, ten tiny jobs each.
MODELS = 10
JOBS_PER_MODEL = 10
TINY = {"epochs": 1, "startDate": "2017-01-01"}


def submit(trainer, model, accepted: list[int], refusals: Counter, errors: list[BaseException], deadline: float):
    """Start JOBS_PER_MODEL jobs for `model`, retrying every refusal (the model's job is live)."""
    try:
        data = FineTuningConfigSerializer(data=TINY, context={"model": model})
        assert data.is_valid(), data.errors
        v = data.validated_data
        mine = 0
        while mine < JOBS_PER_MODEL and time.monotonic() < deadline:
            try:
                job = training_job_start(
                    actor=trainer,
                    model=model,
                    config=v["resolved"].config,
                    dataset=v["resolved"].dataset,
                    base_version=None,
                )
            except Conflict as exc:
                assert exc.code == "job_in_progress", exc
                refusals[model.name] += 1
                time.sleep(0.1)
                continue
            accepted.append(job.pk)
            mine += 1
    except BaseException as exc:
        errors.append(exc)
    finally:
        connection.close()  # the thread's own connection


def submit_all(pairs: list[tuple], deadline: float) -> tuple[list[int], Counter]:
    """One submitter thread per (trainer, model): the jobs accepted, in order, and the refusals per model."""
    accepted: list[int] = []
    refusals: Counter = Counter()
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=submit, args=(trainer, model, accepted, refusals, errors, deadline))
        for trainer, model in pairs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return accepted, refusals
