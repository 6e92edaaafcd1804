"""Hyperparameter studies end to end in this process: trials are jobs, the best is trained in full
and registered with its lineage, a lost worker fails its trial only, and the API guards it all."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
import torch

from models_mgmt.choices import JobStatus, Role, StudyRole, StudyStatus, TrialState
from models_mgmt.models import AuditEvent, ProgressEvent, Study, StudyTrial, TrainingJob
from models_mgmt.services.studies import study_advance
from models_mgmt.training.reaper import training_jobs_reap
from models_mgmt.training.worker import training_job_execute
from tests.factories import UserFactory, grant

torch.set_num_threads(1)

CONFIG = {"epochs": 2, "startDate": "2014-01-01", "earlyStoppingPatience": 0, "walkForwardFolds": 2}


@pytest.fixture
def model(sp500_model):
    return sp500_model


def start(api, user, model, body):
    return api(user).post(f"/api/model-management/models/{model.name}/studies", body, format="json")


def run_queued(study: Study) -> list[int]:
    """Run the study's queued jobs (trials, then the final one) until none is left, like the workers."""
    ran = []
    while job := TrainingJob.objects.filter(study=study, status=JobStatus.QUEUED).order_by("id").first():
        training_job_execute(job_id=job.pk)
        ran.append(job.pk)
    return ran


def test_a_study_runs_trials_as_jobs_then_registers_the_best_with_its_lineage(api, model):
    space = {"learningRate": {"choices": [1e-7, 1e-2]}}
    # pruning off: every trial scores both folds (pruning has its own test)
    body = {"space": space, "nTrials": 3, "parallelism": 2, "pruning": False, "config": CONFIG}
    response = start(api, model.owner, model, body)
    assert response.status_code == 202, response.data
    study = Study.objects.get(pk=response.data["id"])
    assert study.status == StudyStatus.RUNNING and len(response.data["trials"]) == 2  # parallelism 2
    jobs = api(model.owner).get("/api/model-management/jobs", {"model": model.name}).data["results"]
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"queued"}  # visible like any job

    run_queued(study)
    study.refresh_from_db()
    assert study.status == StudyStatus.FINISHED, study.error
    trials = list(StudyTrial.objects.filter(study=study).order_by("number"))
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE and len(t.fold_scores) == 2 for t in trials)
    best = max(trials, key=lambda t: t.value)
    assert study.best["params"] == best.params and study.best["cvScore"] == best.value

    final = study.final_job
    assert final.study_role == StudyRole.FINAL and final.status == JobStatus.SUCCEEDED
    version = final.version
    assert version.metadata["lineage"]["study"] == study.pk
    assert version.metadata["lineage"]["trial"] == best.number
    assert final.config["learningRate"] == best.params["learningRate"]
    assert "walkForward" in version.metadata
    # The holdout score (the final version on its validation window) stands beside the CV score.
    assert study.holdout["version"] == version.version and study.holdout["overallScore"] == version.accuracy
    assert study.holdout["window"] == version.metadata["validationWindow"]

    shown = api(model.owner).get(f"/api/model-management/studies/{study.pk}").data
    assert shown["best"]["cvScore"] == best.value and shown["holdout"]["version"] == version.version
    assert [t["state"] for t in shown["trials"]] == ["complete"] * 3
    assert all(t["durationS"] is not None and t["foldScores"] for t in shown["trials"])
    actions = set(AuditEvent.objects.filter(object_type="study").values_list("action", flat=True))
    assert {"study.started", "study.best_queued", "study.finished"} <= actions


def test_a_space_with_one_value_ends_with_that_value(api, model):
    # hiddenSizes: a list choice travels through Optuna as JSON text and must come back a list.
    space = {"dropout": {"choices": [0.2]}, "hiddenSizes": {"choices": [[24, 12]]}}
    study = Study.objects.get(
        pk=start(api, model.owner, model, {"space": space, "nTrials": 2, "config": CONFIG}).data["id"]
    )
    run_queued(study)
    study.refresh_from_db()
    assert study.status == StudyStatus.FINISHED, study.error
    assert study.best["params"] == {"dropout": 0.2, "hiddenSizes": [24, 12]}
    assert all(t.params == study.best["params"] for t in StudyTrial.objects.filter(study=study))
    hyper = study.final_job.config["hyperparameters"]
    assert hyper["dropout"] == 0.2 and hyper["hiddenSizes"] == [24, 12]


def test_a_lost_worker_fails_its_trial_and_the_next_trial_runs(api, model, settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT_S = 1
    body = {"space": {"dropout": {"low": 0.0, "high": 0.5}}, "nTrials": 2, "parallelism": 1, "config": CONFIG}
    study = Study.objects.get(pk=start(api, model.owner, model, body).data["id"])
    first = TrainingJob.objects.get(study=study)
    # A worker claimed it and was killed: its pid no longer exists on this host.
    TrainingJob.objects.filter(pk=first.pk).update(
        status=JobStatus.RUNNING, worker=f"{socket.gethostname()}:999999", attempts=1
    )
    StudyTrial.objects.filter(job=first).update(number=0, state=TrialState.RUNNING)
    assert (first.pk, "failed") in training_jobs_reap()
    first.refresh_from_db()
    assert first.status == JobStatus.FAILED and first.error_code == "worker_lost"
    assert StudyTrial.objects.get(job=first).state == TrialState.FAIL
    study.refresh_from_db()
    assert study.status == StudyStatus.RUNNING  # the study goes on
    nxt = TrainingJob.objects.get(study=study, status=JobStatus.QUEUED)
    run_queued(study)
    assert StudyTrial.objects.get(job=nxt).state == TrialState.COMPLETE
    study.refresh_from_db()
    assert study.status == StudyStatus.FINISHED


def test_parameter_importance_appears_once_enough_trials_completed(api, model):
    space = {"dropout": {"low": 0.0, "high": 0.5}, "learningRate": {"choices": [1e-7, 1e-2]}}
    body = {"space": space, "nTrials": 5, "pruning": False, "config": {**CONFIG, "epochs": 1}}
    study = Study.objects.get(pk=start(api, model.owner, model, body).data["id"])
    run_queued(study)
    study.refresh_from_db()
    assert study.status == StudyStatus.FINISHED, study.error
    assert set(study.importance) <= {"dropout", "learningRate"} and study.importance
    shown = api(model.owner).get(f"/api/model-management/studies/{study.pk}").data
    assert shown["importance"] == study.importance


def test_a_spent_time_budget_starts_no_new_trial_and_trains_the_best(api, model):
    body = {"space": {"dropout": {"low": 0.0, "high": 0.5}}, "nTrials": 5, "timeBudgetS": 60, "config": CONFIG}
    response = start(api, model.owner, model, body)
    assert response.status_code == 202 and response.data["timeBudgetS"] == 60
    study = Study.objects.get(pk=response.data["id"])
    Study.objects.filter(pk=study.pk).update(created_at=study.created_at - dt.timedelta(seconds=61))
    run_queued(study)
    study.refresh_from_db()
    assert study.status == StudyStatus.FINISHED and study.trials.count() == 1  # only the trial started in time
    assert study.final_job.version is not None


def test_trial_jobs_are_on_the_feed_like_any_job(api, model):
    body = {"space": {"dropout": {"choices": [0.1]}}, "nTrials": 1, "config": CONFIG}
    study = Study.objects.get(pk=start(api, model.owner, model, body).data["id"])
    run_queued(study)
    trial_job = TrainingJob.objects.get(study=study, study_role=StudyRole.TRIAL)
    statuses = [
        p["status"]
        for p in ProgressEvent.objects.filter(job_id=trial_job.pk, type="job.status").values_list("payload", flat=True)
    ]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"


def test_stopping_a_study_stops_its_queued_trials(api, model):
    body = {"space": {"dropout": {"choices": [0.1, 0.2]}}, "nTrials": 4, "parallelism": 2, "config": CONFIG}
    study = Study.objects.get(pk=start(api, model.owner, model, body).data["id"])
    response = api(model.owner).post(f"/api/model-management/studies/{study.pk}/stop")
    assert response.status_code == 200, response.data
    study.refresh_from_db()
    assert study.status == StudyStatus.STOPPED  # no trial completed: nothing to train
    assert set(TrainingJob.objects.filter(study=study).values_list("status", flat=True)) == {JobStatus.STOPPED}
    assert api(model.owner).post(f"/api/model-management/studies/{study.pk}/stop").status_code == 409
    assert AuditEvent.objects.filter(object_type="study", action="study.stop_requested").count() == 1
    assert study_advance(study.pk).status == StudyStatus.STOPPED  # terminal stays terminal


def test_a_second_live_study_on_the_model_is_409(api, model):
    body = {"space": {"dropout": {"choices": [0.1]}}, "nTrials": 1, "config": CONFIG}
    assert start(api, model.owner, model, body).status_code == 202
    assert start(api, model.owner, model, body).data["code"] == "study_in_progress"


def test_permissions_viewer_reads_trainer_starts_stranger_sees_nothing(api, model):
    viewer, trainer, stranger = (UserFactory(role=r) for r in (Role.VIEWER, Role.TRAINER, Role.TRAINER))
    grant(viewer, model, Role.VIEWER)
    grant(trainer, model, Role.TRAINER)
    body = {"space": {"dropout": {"choices": [0.1]}}, "nTrials": 1, "config": CONFIG}
    assert start(api, viewer, model, body).status_code == 403
    assert start(api, stranger, model, body).status_code == 404
    assert Study.objects.count() == 0
    study_id = start(api, trainer, model, body).data["id"]
    assert api(viewer).get(f"/api/model-management/studies/{study_id}").status_code == 200
    assert api(stranger).get(f"/api/model-management/studies/{study_id}").status_code == 404
    assert api(viewer).post(f"/api/model-management/studies/{study_id}/stop").status_code == 403
    assert api(stranger).post(f"/api/model-management/studies/{study_id}/stop").status_code == 404
    assert api(viewer).get(f"/api/model-management/models/{model.name}/studies").data[0]["id"] == study_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "space"),
        ({"space": {"horizon": {"choices": [5, 10]}}}, "space"),
        ({"space": {"dropout": {"low": 0.5, "high": 0.1}}}, "space"),
        ({"space": {"learning_speed": {"low": 0.1, "high": 0.2}}}, "space"),
        ({"space": {"dropout": {"choices": [0.1]}}, "nTrials": 0}, "nTrials"),
        ({"space": {"dropout": {"choices": [0.1]}}, "nTrials": True}, "nTrials"),
        ({"space": {"dropout": {"choices": [0.1]}}, "parallelism": 9}, "parallelism"),
        ({"space": {"dropout": {"choices": [0.1]}}, "sampler": "grid"}, "sampler"),
        ({"space": {"dropout": {"choices": [0.1]}}, "timeBudgetS": 0}, "timeBudgetS"),
        ({"space": {"dropout": {"choices": [0.1]}}, "trials": 3}, "trials"),
        ({"space": {"dropout": {"choices": [0.1]}}, "config": {"epochs": 0}}, "config"),
        ({"space": {"dropout": {"choices": [0.1]}}, "config": {"walkForwardFolds": 1}}, "config"),
    ],
)
def test_bad_input_is_400_and_writes_nothing(api, model, body, field):
    response = start(api, model.owner, model, body)
    assert response.status_code == 400, response.data
    assert field in response.data["fields"], response.data
    assert Study.objects.count() == 0 and TrainingJob.objects.count() == 0


@pytest.mark.parametrize(
    ("config", "refused"),
    [
        ({"device": "cuda"}, {"device"}),
        ({"device": "cpu"}, {"device"}),  # even the CPU: the trials never read it
        ({"device": None}, {"device"}),
        ({"distributed": {"nprocPerNode": 2}}, {"distributed"}),
        ({"device": "auto", "distributed": {"nprocPerNode": 2}}, {"device", "distributed"}),
        ({"device": "gpu", "epochs": 0}, {"device", "epochs"}),  # beside the config's own problems
    ],
)
def test_a_study_refuses_a_device_and_a_torchrun_group_with_the_reason(api, model, config, refused):
    """Trials train in the claiming worker's own process on its CPU: what they would ignore is a 400."""
    body = {"space": {"dropout": {"choices": [0.1]}}, "config": {**CONFIG, **config}}
    response = start(api, model.owner, model, body)
    assert response.status_code == 400, response.data
    fields = response.data["fields"]["config"]
    assert set(fields) == refused, fields
    if "device" in refused:
        assert "trials train in the claiming worker's own process on its CPU" in fields["device"][0]
    if "distributed" in refused:
        assert "never in a torchrun group" in fields["distributed"][0]
    assert Study.objects.count() == 0 and TrainingJob.objects.count() == 0


def test_a_study_takes_distributed_null_and_its_jobs_the_default_device(api, model, settings):
    settings.DEFAULT_TRAINING_DEVICE = "auto"
    body = {"space": {"dropout": {"choices": [0.1]}}, "nTrials": 1, "config": {**CONFIG, "distributed": None}}
    response = start(api, model.owner, model, body)
    assert response.status_code == 202, response.data
    study = Study.objects.get(pk=response.data["id"])
    assert study.config["distributed"] is None and study.config["device"] == "auto"  # the final run's device
