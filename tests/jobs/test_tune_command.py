"""`manage.py tune`: the same study service as the API, run here with a progress line."""

from __future__ import annotations

import io

import pytest
import torch
from django.core.management import CommandError, call_command

from models_mgmt.choices import StudyStatus
from models_mgmt.models import Study

torch.set_num_threads(1)
QUICK = ["--epochs", "2", "--start-date", "2014-01-01", "--walk-forward-folds", "2", "--patience", "0"]


def test_tune_runs_a_study_to_its_best_version(sp500_model):
    out = io.StringIO()
    space = '{"dropout": {"choices": [0.1, 0.3]}}'
    call_command(
        "tune", sp500_model.name, "--user", sp500_model.owner.username, "--trials", "2", "--space", space, *QUICK,
        stdout=out,
    )  # fmt: skip
    study = Study.objects.get(model=sp500_model)
    assert study.status == StudyStatus.FINISHED
    text = out.getvalue()
    assert "2/2 trials" in text and "best trial" in text and "holdout" in text and "wall time" in text


def test_tune_refuses_a_bad_space_before_starting(sp500_model):
    with pytest.raises(CommandError, match="horizon"):
        call_command(
            "tune", sp500_model.name, "--user", sp500_model.owner.username, "--space", '{"horizon": {"choices": [5]}}'
        )
    assert not Study.objects.exists()


def test_tune_refuses_a_device_with_the_reason_before_starting(sp500_model):
    """The API's refusal in the same words: the trials train in the worker's own process on its CPU."""
    with pytest.raises(CommandError, match="trials train in the claiming worker's own process on its CPU"):
        call_command("tune", sp500_model.name, "--user", sp500_model.owner.username, "--device", "cuda")
    assert not Study.objects.exists()
