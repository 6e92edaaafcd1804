"""A study on a real qcluster: killing the worker of a trial fails that trial only (issue 14)."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

from models_mgmt.choices import JobStatus, Role, StudyStatus, TrialState
from models_mgmt.models import Study, StudyTrial, TrainingJob
from models_mgmt.services import dataset_create_from_csv
from models_mgmt.training.search import optuna_storage
from tests.factories import UserFactory
from tests.hourly import csv_of
from tests.synthetic import trending_bars

from .conftest import wait_for

pytestmark = pytest.mark.slow

# The first trial must still be training when it is killed: small batches, no early stopping.
SLOW_TRIAL = {
    "epochs": 40,
    "batchSize": 8,
    "earlyStoppingPatience": 0,
    "startDate": "2013-01-01",
    "walkForwardFolds": 2,
}


def _finished(study: Study):
    def check():
        study.refresh_from_db()
        return study if study.status not in ("running", "stopping", "finalizing") else None

    return check


def test_two_workers_find_the_hyperparameter_that_clearly_matters(cluster, api, trainer_and_model):
    """Synthetic trend regimes: a learning rate of 1e-7 learns nothing in 6 epochs, 1e-2 learns them."""
    trainer, model = trainer_and_model
    dataset_create_from_csv(
        actor=UserFactory(role=Role.MAINTAINER),
        name="trending",
        symbol="SYN",
        timeframe="1d",
        description="synthetic 40-day trend regimes",
        data=csv_of(trending_bars()),
    )
    config = {
        "dataset": "trending",
        "epochs": 6,
        "earlyStoppingPatience": 0,
        "walkForwardFolds": 2,
        "hyperparameters": {"hiddenSizes": [16], "dropout": 0.0},
    }
    body = {"space": {"learningRate": {"choices": [1e-7, 1e-2]}}, "nTrials": 12, "parallelism": 2, "config": config}
    response = api(trainer).post(f"/api/model-management/models/{model.name}/studies", body, format="json")
    assert response.status_code == 202, response.data
    study = wait_for(_finished(Study.objects.get(pk=response.data["id"])), 400, "the study to end", cluster.output)
    assert study.status == StudyStatus.FINISHED, (study.error, cluster.output()[-3000:])
    assert study.best["params"] == {"learningRate": 1e-2}
    trials = StudyTrial.objects.filter(study=study).select_related("job")
    assert trials.count() == 12 and not trials.filter(state=TrialState.FAIL).exists()
    assert len({t.job.worker for t in trials}) == 2  # both worker processes ran trials
    assert study.final_job.version.metadata["lineage"]["study"] == study.pk


def test_killing_a_trials_worker_fails_that_trial_and_the_next_trials_run(cluster, api, trainer_and_model):
    trainer, model = trainer_and_model
    body = {"space": {"dropout": {"low": 0.0, "high": 0.5}}, "nTrials": 2, "parallelism": 1, "config": SLOW_TRIAL}
    response = api(trainer).post(f"/api/model-management/models/{model.name}/studies", body, format="json")
    assert response.status_code == 202, response.data
    study = Study.objects.get(pk=response.data["id"])
    first = TrainingJob.objects.get(study=study)

    def asked_and_running():
        job = TrainingJob.objects.get(pk=first.pk)
        trial = StudyTrial.objects.get(job=job)
        return job if job.status == JobStatus.RUNNING and job.worker and trial.number is not None else None

    job = wait_for(asked_and_running, 180, "the first trial to run", cluster.output)
    os.kill(int(job.worker.rpartition(":")[2]), signal.SIGKILL)

    def finished():
        study.refresh_from_db()
        return study if study.status not in ("running", "stopping", "finalizing") else None

    wait_for(finished, 400, "the study to end", cluster.output)
    first.refresh_from_db()
    assert (first.status, first.error_code) == (JobStatus.FAILED, "worker_lost"), cluster.output()[-3000:]
    trials = {t.job_id: t for t in StudyTrial.objects.filter(study=study)}
    assert trials[first.pk].state == TrialState.FAIL
    others = [t for job_id, t in trials.items() if job_id != first.pk]
    assert len(others) == 1 and others[0].state == TrialState.COMPLETE  # the next trial ran
    assert study.status == StudyStatus.FINISHED, study.error
    assert study.best["trialNumber"] == others[0].number
    # Optuna itself holds the lost trial as FAIL (told by the next trial's worker), none left RUNNING.
    storage = optuna_storage()  # the journal file on SQLite, the RDB storage on PostgreSQL
    states = {t.number: t.state for t in optuna.load_study(study_name=study.optuna_name, storage=storage).trials}
    assert states[trials[first.pk].number] == optuna.trial.TrialState.FAIL
    assert optuna.trial.TrialState.RUNNING not in states.values()
