"""A fine-tune with `evaluation: "walk_forward"` stores the folds' report on its version (issue 14)."""

from __future__ import annotations

import pytest
import torch

from models_mgmt.choices import JobStatus
from models_mgmt.models import TrainingJob
from models_mgmt.training.worker import training_job_execute
from tests.jobs.helpers import start

torch.set_num_threads(1)

QUICK = {"epochs": 2, "startDate": "2015-01-01", "earlyStoppingPatience": 0}


@pytest.fixture
def model(sp500_model):
    return sp500_model


def test_a_walk_forward_fine_tune_stores_the_report_on_its_version(api, model):
    job_id = start(api, model, {**QUICK, "evaluation": "walk_forward", "walkForwardFolds": 3})
    assert training_job_execute(job_id=job_id).status == JobStatus.SUCCEEDED
    version = TrainingJob.objects.get(pk=job_id).version
    report = version.metadata["walkForward"]
    assert report["foldCount"] == 3 and len(report["folds"]) == 3
    # The holdout is the version's validation window, and every fold's test block ends before it.
    assert report["holdoutWindow"] == version.metadata["validationWindow"]
    assert all(fold["testWindow"][1] < report["holdoutWindow"][0] for fold in report["folds"])
    assert set(report["mean"]) == {"patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"}

    shown = api(model.owner).get(f"/api/model-management/models/{model.name}/versions/{version.version}")
    assert shown.status_code == 200
    assert shown.data["metadata"]["walkForward"]["foldCount"] == 3


def test_a_plain_fine_tune_has_no_walk_forward_report(api, model):
    job_id = start(api, model, QUICK)
    assert training_job_execute(job_id=job_id).status == JobStatus.SUCCEEDED
    assert "walkForward" not in TrainingJob.objects.get(pk=job_id).version.metadata
