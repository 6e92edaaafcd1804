"""POST fine-tune: every config field's bounds, defaults, conflicts, and nothing written on error."""

from __future__ import annotations

import pytest

from models_mgmt.choices import JobStatus, Role, VersionStatus
from models_mgmt.models import AuditEvent, TrainingJob
from tests.factories import DatasetFactory, ModelVersionFactory, TrainingJobFactory, UserFactory, grant

URL = "/api/model-management/models/llama3.1:8b/fine-tune"


@pytest.fixture
def trainer(ai_model):
    user = UserFactory(role=Role.TRAINER)
    grant(user, ai_model, Role.TRAINER)
    return user


def start(api, user, body):
    return api(user).post(URL, body, format="json")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 10001),
        ("epochs", "many"),
        ("epochs", 2.5),
        ("learningRate", 0),
        ("learningRate", -0.1),
        ("learningRate", 1.0001),
        ("batchSize", 0),
        ("batchSize", 65537),
        ("validationSplit", 0),
        ("validationSplit", 0.51),
        ("earlyStoppingPatience", -1),
        ("trainingDataSize", 0),
        ("trainingDataSize", 301),  # the sample dataset holds 300 bars
        ("activationPolicy", "always"),
        ("dataset", "no-such-dataset"),
        ("baseModel", "v9.9.9"),
        ("modelName", "other-model"),
        ("hyperparameters", {"learning_speed": 3}),
        ("hyperparameters", {"dropout": 0.95}),
        ("hyperparameters", {"hiddenSizes": [64, "wide"]}),
        ("hyperparameters", {"freezeTrunk": "yes"}),
        ("hyperparameters", "not-a-dict"),
        ("evaluation", "k_fold"),
        ("evaluation", True),
        ("walkForwardFolds", 1),
        ("walkForwardFolds", 11),
        ("walkForwardFolds", 2.5),
        ("owner", "someone-else"),
        ("status", "succeeded"),
    ],
)
def test_out_of_bounds_field_is_named_and_nothing_is_written(api, trainer, field, value):
    audit_before = AuditEvent.objects.count()
    response = start(api, trainer, {field: value})
    assert response.status_code == 400, response.data
    assert response.data["code"] == "invalid"
    assert field in response.data["fields"], response.data
    assert TrainingJob.objects.count() == 0
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.parametrize(
    "body",
    [
        {"epochs": 1, "learningRate": 1, "batchSize": 1, "validationSplit": 0.5, "earlyStoppingPatience": 0},
        {
            "epochs": 10000,
            "learningRate": 1e-9,
            "batchSize": 65536,
            "validationSplit": 0.01,
            "earlyStoppingPatience": 10000,
        },
        {"trainingDataSize": 300},
        {"hyperparameters": {"hiddenSizes": [8], "dropout": 0.0, "seed": 7, "freezeTrunk": True}},
    ],
)
def test_edges_of_every_bound_are_accepted(api, trainer, body):
    response = start(api, trainer, body)
    assert response.status_code == 202, response.data


def test_patience_cannot_exceed_epochs(api, trainer):
    response = start(api, trainer, {"epochs": 5, "earlyStoppingPatience": 6})
    assert response.status_code == 400
    assert "earlyStoppingPatience" in response.data["fields"]


def test_unknown_hyperparameter_lists_the_allowed_ones(api, trainer):
    response = start(api, trainer, {"hyperparameters": {"lr_schedule": "cosine"}})
    message = response.data["fields"]["hyperparameters"]["lr_schedule"]
    assert "allowed" in message and "hiddenSizes" in message and "dropout" in message


def test_defaults_fill_the_rest(api, trainer, settings):
    settings.DEFAULT_TRAINING_EPOCHS = 7
    settings.DEFAULT_BATCH_SIZE = 16
    response = start(api, trainer, {"learningRate": 0.01})
    assert response.status_code == 202
    config = response.data["config"]
    assert config["epochs"] == 7
    assert config["batchSize"] == 16
    assert config["learningRate"] == 0.01
    assert config["validationSplit"] == settings.DEFAULT_VALIDATION_SPLIT
    assert config["trainingDataSize"] == 300
    assert config["dataset"] == "sample"
    assert config["activationPolicy"] == "manual"
    assert config["hyperparameters"]["horizon"] == 5
    assert config["baseModel"] is None  # no version yet: from scratch
    assert config["evaluation"] == "validation" and config["walkForwardFolds"] == 4


def test_walk_forward_is_accepted_with_its_folds(api, trainer):
    response = start(api, trainer, {"evaluation": "walk_forward", "walkForwardFolds": 3})
    assert response.status_code == 202, response.data
    assert response.data["config"]["evaluation"] == "walk_forward"
    assert response.data["config"]["walkForwardFolds"] == 3


def test_the_seed_example_is_accepted_and_queued(api, trainer):
    DatasetFactory(name="sample").bars.all().delete()
    big = DatasetFactory(name="big", bars=10000)
    body = {"epochs": 100, "learningRate": 0.001, "batchSize": 64, "trainingDataSize": 10000, "dataset": big.name}
    response = start(api, trainer, body)
    assert response.status_code == 202, response.data
    assert response.data["status"] == "queued"
    assert response.data["progress"] == 0
    assert response.data["modelName"] == "llama3.1:8b"


def test_base_model_defaults_to_the_active_version(api, trainer, ai_model):
    ModelVersionFactory(model=ai_model, version="v1.0.0", status=VersionStatus.ACTIVE)
    ModelVersionFactory(model=ai_model, version="v1.1.0", status=VersionStatus.READY)
    assert start(api, trainer, {}).data["baseVersion"] == "v1.0.0"


def test_base_model_can_name_another_version(api, trainer, ai_model):
    ModelVersionFactory(model=ai_model, version="v1.0.0", status=VersionStatus.ACTIVE)
    ModelVersionFactory(model=ai_model, version="v1.1.0", status=VersionStatus.READY)
    assert start(api, trainer, {"baseModel": "v1.1.0"}).data["baseVersion"] == "v1.1.0"


def test_a_failed_version_is_no_base(api, trainer, ai_model):
    ModelVersionFactory(model=ai_model, version="v1.0.0", status=VersionStatus.FAILED)
    response = start(api, trainer, {"baseModel": "v1.0.0"})
    assert response.status_code == 400
    assert "baseModel" in response.data["fields"]


@pytest.mark.parametrize("live", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING])
def test_second_start_while_a_job_is_live_is_409(api, trainer, ai_model, live):
    existing = TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=live)
    response = start(api, trainer, {})
    assert response.status_code == 409
    assert response.data["code"] == "job_in_progress"
    assert str(existing.pk) in response.data["detail"]
    assert TrainingJob.objects.count() == 1


@pytest.mark.parametrize("done", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED])
def test_a_finished_job_does_not_block_a_new_one(api, trainer, ai_model, done):
    TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=done)
    assert start(api, trainer, {}).status_code == 202


def test_training_disabled_refuses_new_jobs(api, trainer, settings):
    settings.MODEL_TRAINING_ENABLED = False
    response = start(api, trainer, {})
    assert response.status_code == 503
    assert response.data["code"] == "training_disabled"
    assert "MODEL_TRAINING_ENABLED" in response.data["detail"]
    assert TrainingJob.objects.count() == 0


def test_start_is_audited_and_status_shows_the_job(api, trainer):
    job_id = start(api, trainer, {"epochs": 3}).data["id"]
    event = AuditEvent.objects.get(action="job.started")
    assert event.actor == trainer
    assert event.object_id == str(job_id)
    assert event.after["config"]["epochs"] == 3
    status = api(trainer).get(f"{URL}/status")
    assert status.status_code == 200
    assert status.data["id"] == job_id
    assert status.data["status"] == "queued"
    assert status.data["epochs"] == []


def test_status_without_any_job_is_404(api, trainer):
    response = api(trainer).get(f"{URL}/status")
    assert response.status_code == 404
    assert "no training job" in response.data["detail"]


def test_stop_a_queued_job_stops_it_at_once(api, trainer):
    start(api, trainer, {})
    response = api(trainer).post(f"{URL}/stop")
    assert response.status_code == 200
    assert response.data["status"] == "stopped"
    assert response.data["finishedAt"] is not None


def test_stop_a_running_job_asks_the_worker(api, trainer, ai_model):
    TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.RUNNING)
    response = api(trainer).post(f"{URL}/stop")
    assert response.data["status"] == "stopping"
    again = api(trainer).post(f"{URL}/stop")  # idempotent while the worker winds down
    assert again.status_code == 200 and again.data["status"] == "stopping"


def test_stop_without_a_live_job_is_409(api, trainer):
    response = api(trainer).post(f"{URL}/stop")
    assert response.status_code == 409
    assert response.data["code"] == "no_job_in_progress"


def test_malformed_json_is_400(api, trainer):
    response = api(trainer).post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400


NUMBERS = {
    "epochs": "must be an integer",
    "batchSize": "must be an integer",
    "earlyStoppingPatience": "must be an integer",
    "trainingDataSize": "must be an integer",
    "learningRate": "must be a number",
    "validationSplit": "must be a number",
}


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("field", NUMBERS)
def test_a_boolean_where_a_number_is_expected_gets_a_type_message(api, trainer, field, value):
    """`validationSplit: true` was read as 1.0 and got a range message; `epochs: true` a type message."""
    response = start(api, trainer, {field: value})
    assert response.status_code == 400
    assert response.data["fields"] == {field: [NUMBERS[field]]}


def test_the_same_kind_of_mistake_gets_the_same_kind_of_message_on_every_number(api, trainer):
    """Type mistakes read "must be an integer/a number" and range mistakes "must be ... at most ...",
    whether the serializer or the service catches them (DRF's own wording never shows)."""
    for field, message in NUMBERS.items():
        assert start(api, trainer, {field: "many"}).data["fields"] == {field: [message]}
    ranges = {
        "epochs": ({"epochs": 0}, "must be at least 1 and at most 10000"),
        "batchSize": ({"batchSize": 65537}, "must be at least 1 and at most 65536"),
        "earlyStoppingPatience": ({"earlyStoppingPatience": -1}, "must be at least 0"),
        "learningRate": ({"learningRate": 0}, "must be greater than 0 and at most 1"),
        "validationSplit": ({"validationSplit": 0.9}, "must be greater than 0 and at most 0.5"),
    }
    for field, (body, message) in ranges.items():
        assert start(api, trainer, body).data["fields"] == {field: [message]}
