"""POST fine-tune with `device` and `distributed`: every bad shape is a 400 naming the field, from
the API and from the service the CLI uses alike; accepted ones are stored on the job as given; the
job shows where it trains (`device`); llm-lora refuses both; permissions as for any fine-tune."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from models_mgmt.choices import PERM_FINETUNE, JobStatus, Role
from models_mgmt.errors import InvalidInput
from models_mgmt.models import AuditEvent, BaseModel, TrainingJob
from models_mgmt.services.training_config import training_config_resolve
from tests.api.test_permission_matrix import (
    BASE,
    SMALLEST_ROLE,
    Endpoint,
    call,
    prepare,
    world,  # noqa: F401  # the matrix's model, versions and job (a fixture)
)
from tests.api.test_schema import (
    PREFIX,
    request_schema,
    resolve,
    response_schema,
    schema,  # noqa: F401  # the OpenAPI document (a fixture)
)
from tests.factories import AIModelFactory, TrainingJobFactory, UserFactory, grant

URL = "/api/model-management/models/llama3.1:8b/fine-tune"
TWO_RANKS = {"nprocPerNode": 2}


@pytest.fixture
def trainer(ai_model):
    user = UserFactory(role=Role.TRAINER)
    grant(user, ai_model, Role.TRAINER)
    return user


def start(api, user, body, url=URL):
    return api(user).post(url, body, format="json")


BAD = [
    # (body, the field named, words of the reason)
    ({"device": "gpu"}, "device", "choose one of: auto, cpu, cuda"),
    ({"device": "CUDA"}, "device", "choose one of"),
    ({"device": True}, "device", "choose one of"),
    ({"device": None}, "device", "choose one of: auto, cpu, cuda"),  # not DRF's "may not be null"
    ({"distributed": "two"}, "distributed", "must be null or an object"),
    ({"distributed": [2]}, "distributed", "must be null or an object"),
    ({"distributed": 2}, "distributed", "must be null or an object"),
    ({"distributed": {}}, "distributed", "nprocPerNode"),
    ({"distributed": {"nnodes": 1}}, "distributed", "required"),
    ({"distributed": {"nprocPerNode": 0}}, "distributed", "must be at least 1 and at most 64"),
    ({"distributed": {"nprocPerNode": 65}}, "distributed", "at most 64"),
    ({"distributed": {"nprocPerNode": True}}, "distributed", "must be an integer"),
    ({"distributed": {"nprocPerNode": 2.5}}, "distributed", "must be an integer"),
    ({"distributed": {"nprocPerNode": "2"}}, "distributed", "must be an integer"),
    ({"distributed": {"nprocPerNode": 2, "nnodes": 0}}, "distributed", "must be at least 1"),
    ({"distributed": {"nprocPerNode": 2, "nnodes": "two"}}, "distributed", "must be an integer"),
    ({"distributed": {"nprocPerNode": 2, "nnodes": 2}}, "distributed", "rdzvEndpoint"),
    ({"distributed": {"nprocPerNode": 2, "nnodes": 2, "rdzvEndpoint": None}}, "distributed", "required when nnodes"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "localhost"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": ":29500"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "h:0"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "h:65536"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": 29500}}, "distributed", "must be a string"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "h:²"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "h:٣"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "-x:1"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "h :1"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "a\nb:1"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "rdzvEndpoint": "[::1:29500"}}, "distributed", "host:port"),
    ({"distributed": {"nprocPerNode": 2, "workers": 3}}, "distributed", "unknown key"),
    (
        {"batchSize": 128, "distributed": {"nprocPerNode": 32, "nnodes": 4, "rdzvEndpoint": "h:29500"}},
        "distributed",
        "world size nprocPerNode x nnodes = 128 must be at most 64",
    ),
    ({"distributed": {"nprocPerNode": 3}}, "distributed", "= 3 must divide batchSize (64)"),  # the default 64
    ({"batchSize": 63, "distributed": TWO_RANKS}, "distributed", "must divide batchSize (63)"),
    (
        {"batchSize": 100, "distributed": {"nprocPerNode": 4, "nnodes": 2, "rdzvEndpoint": "h:29500"}},
        "distributed",
        "= 8 must divide batchSize (100)",
    ),
]


@pytest.mark.parametrize(("body", "field", "reason"), BAD, ids=[json.dumps(b) for b, _, _ in BAD])
def test_a_bad_shape_is_a_400_naming_the_field_and_nothing_is_written(api, trainer, ai_model, body, field, reason):
    audit_before = AuditEvent.objects.count()
    response = start(api, trainer, body)
    assert response.status_code == 400, response.data
    assert response.data["code"] == "invalid"
    assert reason in json.dumps(response.data["fields"][field]), response.data
    assert TrainingJob.objects.count() == 0
    assert AuditEvent.objects.count() == audit_before
    # The service (what the finetune command calls) refuses it in the same words.
    with pytest.raises(InvalidInput) as refused:
        training_config_resolve(model=ai_model, fields=body)
    assert refused.value.fields[field] == response.data["fields"][field]


def test_a_batch_size_in_error_is_named_alone(api, trainer):
    """No divisibility verdict on a batchSize that is itself refused."""
    response = start(api, trainer, {"batchSize": 0, "distributed": {"nprocPerNode": 3}})
    assert response.status_code == 400
    assert set(response.data["fields"]) == {"batchSize"}


def test_every_problem_of_the_group_is_named_at_once(api, trainer):
    body = {"distributed": {"nprocPerNode": 0, "nnodes": 0, "extra": 1}}
    fields = start(api, trainer, body).data["fields"]["distributed"]
    assert set(fields) == {"nprocPerNode", "nnodes", "extra"}


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        ({}, {"device": "cpu", "distributed": None}),  # tests/settings.py's DEFAULT_TRAINING_DEVICE
        ({"device": "auto", "distributed": None}, {"device": "auto", "distributed": None}),
        ({"device": "cpu"}, {"device": "cpu", "distributed": None}),
        ({"device": "cuda"}, {"device": "cuda", "distributed": None}),  # the claiming worker decides
        (
            {"device": "cpu", "distributed": TWO_RANKS},
            {"device": "cpu", "distributed": {"nprocPerNode": 2, "nnodes": 1, "rdzvEndpoint": None}},
        ),
        (
            {"distributed": {"nprocPerNode": 64}},  # world size 64 divides the default batchSize 64
            {"device": "cpu", "distributed": {"nprocPerNode": 64, "nnodes": 1, "rdzvEndpoint": None}},
        ),
        (
            {"batchSize": 96, "distributed": {"nprocPerNode": 4, "nnodes": 3, "rdzvEndpoint": "trainer-1:29500"}},
            {"device": "cpu", "distributed": {"nprocPerNode": 4, "nnodes": 3, "rdzvEndpoint": "trainer-1:29500"}},
        ),
        (
            {"distributed": {"nprocPerNode": 1, "nnodes": 1, "rdzvEndpoint": "10.0.0.5:29400"}},
            {"device": "cpu", "distributed": {"nprocPerNode": 1, "nnodes": 1, "rdzvEndpoint": "10.0.0.5:29400"}},
        ),
        (
            {"distributed": {"nprocPerNode": 1, "rdzvEndpoint": "[::1]:29400"}},
            {"device": "cpu", "distributed": {"nprocPerNode": 1, "nnodes": 1, "rdzvEndpoint": "[::1]:29400"}},
        ),
    ],
)
def test_an_accepted_config_is_stored_on_the_job_in_wire_form(api, trainer, body, stored):
    response = start(api, trainer, body)
    assert response.status_code == 202, response.data
    job = TrainingJob.objects.get(pk=response.data["id"])
    assert {key: job.config[key] for key in stored} == stored
    assert {key: response.data["config"][key] for key in stored} == stored
    assert response.data["device"] == "" and job.device == ""  # no worker has claimed it yet
    started = AuditEvent.objects.get(action="job.started")
    assert started.after["config"]["distributed"] == stored["distributed"]


@pytest.mark.parametrize("default", ["auto", "cpu", "cuda"])
def test_a_config_naming_no_device_takes_the_default_training_device(api, trainer, settings, default):
    settings.DEFAULT_TRAINING_DEVICE = default
    response = start(api, trainer, {})
    assert response.status_code == 202, response.data
    assert TrainingJob.objects.get(pk=response.data["id"]).config["device"] == default


def test_every_job_representation_shows_the_device(api, trainer, ai_model):
    job = TrainingJobFactory(
        model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.SUCCEEDED, device="cpu x2 gloo"
    )
    client = api(trainer)
    assert client.get("/api/model-management/jobs").data["results"][0]["device"] == "cpu x2 gloo"
    assert client.get(f"/api/model-management/jobs/{job.pk}").data["device"] == "cpu x2 gloo"
    assert client.get(f"{URL}/status").data["device"] == "cpu x2 gloo"


def test_the_admin_job_list_shows_the_device(client, ai_model):
    TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.FAILED, device="cuda:0")
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/models_mgmt/trainingjob/")
    assert page.status_code == 200
    assert "column-device" in page.content.decode() and "cuda:0" in page.content.decode()


def test_the_schema_documents_both_fields_and_the_jobs_device(schema):  # noqa: F811
    config = request_schema(schema, f"{PREFIX}/models/{{name}}/fine-tune", "post")
    group = resolve(schema, config["properties"]["distributed"]["allOf"][0])
    assert config["properties"]["distributed"]["nullable"] is True
    assert set(group["properties"]) == {"nprocPerNode", "nnodes", "rdzvEndpoint"}
    assert group["properties"]["nprocPerNode"] == {**group["properties"]["nprocPerNode"], "maximum": 64, "minimum": 1}
    device = resolve(schema, config["properties"]["device"]["allOf"][0])
    assert device["enum"] == ["auto", "cpu", "cuda"]
    job = response_schema(schema, f"{PREFIX}/models/{{name}}/fine-tune", "post", "202")
    assert job["properties"]["device"]["type"] == "string"


# --- llm-lora ------------------------------------------------------------------------------------


@pytest.fixture
def llm_model(owner):
    """An llm-lora model on a registered base (its files are not read: the config is only checked)."""
    BaseModel.objects.create(name="tiny-llama", path="/nowhere", ollama_tag="tiny-llama:latest", architecture="x")
    model = AIModelFactory(name="llm-model", family="llm-lora", base_model="tiny-llama", owner=owner)
    grant(owner, model, Role.MAINTAINER)
    return model


LLM_URL = "/api/model-management/models/llm-model/fine-tune"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"distributed": TWO_RANKS}, "distributed", "llm-lora trains in the worker's own process"),
        ({"distributed": {"nprocPerNode": 1}}, "distributed", "offered for the multitask-mlp family only"),
        ({"device": "cpu"}, "device", "llm-lora chooses its device itself"),
        ({"device": "cuda"}, "device", "leave device 'auto'"),
    ],
)
def test_llm_lora_refuses_distributed_and_a_fixed_device(api, owner, llm_model, body, field, reason):
    response = start(api, owner, body, LLM_URL)
    assert response.status_code == 400, response.data
    assert reason in json.dumps(response.data["fields"][field])
    assert not TrainingJob.objects.exists()


def test_llm_lora_takes_device_auto(api, owner, llm_model):
    response = start(api, owner, {"device": "auto", "distributed": None}, LLM_URL)
    assert response.status_code == 202, response.data
    assert response.data["config"]["device"] == "auto" and response.data["config"]["distributed"] is None


def test_llm_lora_naming_no_device_takes_auto_whatever_the_default(api, owner, llm_model, settings):
    settings.DEFAULT_TRAINING_DEVICE = "cpu"  # the multitask-mlp default; llm-lora picks its device itself
    response = start(api, owner, {}, LLM_URL)
    assert response.status_code == 202, response.data
    assert response.data["config"]["device"] == "auto"


# --- The finetune command ------------------------------------------------------------------------


def test_the_finetune_command_checks_the_group_the_same_way(ai_model, trainer):
    with pytest.raises(CommandError) as refused:
        call_command("finetune", ai_model.name, "--user", trainer.username, "--nproc-per-node", "3", "--worker")
    assert "must divide batchSize (64)" in str(refused.value)
    with pytest.raises(CommandError) as refused:
        call_command("finetune", ai_model.name, "--user", trainer.username, "--device", "gpu", "--worker")
    assert '"device"' in str(refused.value)
    with pytest.raises(CommandError) as refused:
        call_command("finetune", ai_model.name, "--user", trainer.username, "--nproc-per-node", "2", "--nnodes", "2")
    assert "rdzvEndpoint" in str(refused.value)
    assert not TrainingJob.objects.exists()


# --- Permissions: the same matrix as any fine-tune -----------------------------------------------

DISTRIBUTED_START = Endpoint(
    "post", f"{BASE}/fine-tune", PERM_FINETUNE, 202, {"epochs": 3, "device": "cpu", "distributed": TWO_RANKS}
)


def test_anonymous_gets_401(world):  # noqa: F811
    assert call(APIClient(), DISTRIBUTED_START).status_code == 401


def test_without_access_gets_404(world, api):  # noqa: F811
    response = call(api(UserFactory(role=Role.MAINTAINER)), DISTRIBUTED_START)
    assert response.status_code == 404


def test_view_only_gets_403(world, api):  # noqa: F811
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, world, Role.VIEWER)
    response = call(api(viewer), DISTRIBUTED_START)
    assert response.status_code == 403 and response.data["code"] == "permission_denied"
    assert not TrainingJob.objects.filter(status=JobStatus.QUEUED).exists()


def test_the_smallest_granted_role_starts_it(world, api):  # noqa: F811
    prepare(DISTRIBUTED_START, world)
    role = SMALLEST_ROLE[DISTRIBUTED_START.perm]
    user = UserFactory(role=role)
    grant(user, world, role)
    response = call(api(user), DISTRIBUTED_START)
    assert response.status_code == 202, response.data
    assert TrainingJob.objects.get(pk=response.data["id"]).config["distributed"]["nprocPerNode"] == 2


def test_a_bad_group_from_someone_without_access_is_404_not_400(world, api):  # noqa: F811
    """The model's existence is not revealed by validating a body first."""
    body = Endpoint("post", f"{BASE}/fine-tune", PERM_FINETUNE, 202, {"distributed": {"nprocPerNode": 0}})
    assert call(api(UserFactory(role=Role.MAINTAINER)), body).status_code == 404
