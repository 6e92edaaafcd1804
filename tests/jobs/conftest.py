"""A real django-q2 cluster (`manage.py qcluster`) working on the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from models_mgmt.choices import TERMINAL_JOB_STATUSES, Role
from models_mgmt.models import AIModel, TrainingJob
from models_mgmt.services import dataset_import_builtin
from tests.factories import AIModelFactory, UserFactory, grant

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Cluster:
    def __init__(self, artifacts: Path, log: Path):
        self.artifacts = artifacts
        self.log_path = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "ARTIFACTS_DIR": str(self.artifacts),
            "TRAINING_WORKERS": "2",
            "TRAINING_HEARTBEAT_TIMEOUT_S": "30",
        }
        env.pop("REDIS_URL", None)
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches the workers too
        )

    def stop(self) -> None:
        if self.process:
            # The whole tree (cluster, sentinel, workers): the cluster would wait for busy workers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def cluster(transactional_db, tmp_path, settings) -> Iterator[Cluster]:
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    running = Cluster(tmp_path / "artifacts", tmp_path / "qcluster.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def trainer_and_model(transactional_db) -> tuple:
    """A trainer and a model on the real S&P 500 bars."""
    dataset = dataset_import_builtin(name="sp500")
    model = AIModelFactory(name="worker-model", default_dataset=dataset)
    grant(model.owner, model, Role.MAINTAINER)
    trainer = UserFactory(role=Role.TRAINER)
    grant(trainer, model, Role.TRAINER)
    return trainer, model


def wait_for(predicate: Callable[[], object], timeout: float, what: str, cluster: Cluster | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    log = cluster.output()[-4000:] if cluster else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log}")


def job_finished(job_id: int) -> Callable[[], TrainingJob | None]:
    def check() -> TrainingJob | None:
        job = TrainingJob.objects.get(pk=job_id)
        return job if job.status in TERMINAL_JOB_STATUSES else None

    return check


__all__ = ["AIModel", "Cluster", "job_finished", "wait_for"]
