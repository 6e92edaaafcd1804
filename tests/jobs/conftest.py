"""A real django-q2 cluster (`manage.py qcluster`) working on the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models_mgmt.choices import Role
from models_mgmt.models import AIModel
from models_mgmt.services import dataset_import_builtin
from tests.factories import AIModelFactory, UserFactory, grant
from tests.live import LiveProcesses, job_finished, wait_for


@pytest.fixture
def cluster(transactional_db, tmp_path, settings) -> Iterator[LiveProcesses]:
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.OPTUNA_JOURNAL_PATH = tmp_path / "optuna.log"  # one journal for this process and the workers
    live = LiveProcesses(
        tmp_path / "artifacts",
        tmp_path / "qcluster.log",
        TRAINING_WORKERS="2",
        TRAINING_HEARTBEAT_TIMEOUT_S="30",
        OPTUNA_JOURNAL_PATH=str(tmp_path / "optuna.log"),
    )
    try:
        live.qcluster()
        yield live
    finally:
        live.stop()


@pytest.fixture
def trainer_and_model(transactional_db) -> tuple:
    """A trainer and a model on the real S&P 500 bars."""
    dataset = dataset_import_builtin(name="sp500")
    model = AIModelFactory(name="worker-model", default_dataset=dataset)
    grant(model.owner, model, Role.MAINTAINER)
    trainer = UserFactory(role=Role.TRAINER)
    grant(trainer, model, Role.TRAINER)
    return trainer, model


@pytest.fixture
def sp500_model(transactional_db, settings, tmp_path):
    """A model on the real S&P 500 bars, for jobs run in this process. Committed rows: the worker's
    progress thread writes through its own connection."""
    settings.ARTIFACTS_DIR = tmp_path
    model = AIModelFactory(name="exec-model", default_dataset=dataset_import_builtin(name="sp500"))
    grant(model.owner, model, Role.MAINTAINER)
    return model


__all__ = ["AIModel", "job_finished", "wait_for"]  # re-exported for the tests here
