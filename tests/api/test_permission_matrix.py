"""One permission matrix, applied to every model-scoped endpoint.

anonymous -> 401; authenticated without access -> 404 (the model's existence is not revealed);
a viewer -> reads 200, actions 403; the smallest role that holds the permission -> success.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from rest_framework.test import APIClient

from models_mgmt.choices import (
    PERM_ACTIVATE,
    PERM_FINETUNE,
    PERM_MANAGE,
    PERM_VIEW,
    AlertKind,
    ExperimentState,
    JobStatus,
    Role,
    VersionStatus,
)
from models_mgmt.models import AIModel, Alert, Experiment, TrainingJob
from models_mgmt.services.roles import roles_ensure
from tests.factories import AIModelFactory, ModelVersionFactory, TrainingJobFactory, UserFactory, grant

BASE = "/api/model-management/models/llama3.1:8b"
EXPERIMENT = "/api/model-management/experiments/555"
SMALLEST_ROLE = {
    PERM_VIEW: Role.VIEWER,
    PERM_FINETUNE: Role.TRAINER,
    PERM_ACTIVATE: Role.MAINTAINER,
    PERM_MANAGE: Role.MAINTAINER,
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    perm: str
    success: int
    body: dict = field(default_factory=dict)
    live_job: bool = False
    experiment: str | None = None  # the state of experiment 555 to create first

    def __str__(self) -> str:
        return f"{self.method} {self.path.removeprefix(BASE) or '/'}"


ENDPOINTS = [
    Endpoint("get", BASE, PERM_VIEW, 200),
    Endpoint("patch", BASE, PERM_MANAGE, 200, {"description": "new words"}),
    Endpoint("delete", BASE, PERM_MANAGE, 204),
    Endpoint("post", f"{BASE}/access", PERM_MANAGE, 200, {"group": "viewer", "role": "viewer"}),
    Endpoint("get", f"{BASE}/versions", PERM_VIEW, 200),
    Endpoint("get", f"{BASE}/versions/v1.0.0", PERM_VIEW, 200),
    Endpoint("post", f"{BASE}/versions/v1.0.0/activate", PERM_ACTIVATE, 200),
    Endpoint("get", f"{BASE}/metrics", PERM_VIEW, 200),
    Endpoint("get", f"{BASE}/drift", PERM_VIEW, 200),
    Endpoint("get", f"{BASE}/comparison", PERM_VIEW, 200),
    Endpoint("get", f"{BASE}/cost", PERM_VIEW, 200),
    Endpoint("post", f"{BASE}/fine-tune", PERM_FINETUNE, 202, {"epochs": 3}),
    Endpoint("get", f"{BASE}/fine-tune/status", PERM_VIEW, 200),
    Endpoint("post", f"{BASE}/fine-tune/stop", PERM_FINETUNE, 200, live_job=True),
    Endpoint("post", f"{BASE}/predict", PERM_VIEW, 200, {"dataset": "sample", "asOf": "2020-10-01"}),
    Endpoint("get", f"{BASE}/alerts", PERM_VIEW, 200),
    Endpoint("post", f"{BASE}/alerts/777/acknowledge", PERM_MANAGE, 200),
    Endpoint("get", f"{BASE}/guardrails", PERM_VIEW, 200),
    Endpoint("put", f"{BASE}/guardrails", PERM_ACTIVATE, 200, {"enabled": True, "latencyM": 2}),
    Endpoint("get", f"{BASE}/guardrails/evaluations", PERM_VIEW, 200),
    Endpoint("post", f"{BASE}/guardrails/evaluate", PERM_ACTIVATE, 200),
    Endpoint("get", f"{BASE}/experiments", PERM_VIEW, 200, experiment=ExperimentState.RUNNING),
    Endpoint("post", f"{BASE}/experiments", PERM_ACTIVATE, 201, {"challenger": "v0.9.0"}),
    Endpoint("get", f"{EXPERIMENT}", PERM_VIEW, 200, experiment=ExperimentState.RUNNING),
    Endpoint("post", f"{EXPERIMENT}/stop", PERM_ACTIVATE, 200, experiment=ExperimentState.RUNNING),
    Endpoint("post", f"{EXPERIMENT}/promote", PERM_ACTIVATE, 200, experiment=ExperimentState.CHALLENGER_BETTER),
]


def serving_artifact(directory) -> str:
    """A minimal real ONNX artifact (raw features in, three probabilities out) for the served version."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((17, 3), 0.01, dtype=np.float32), name="w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
        ],
        "matrix",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 17])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [weights],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(directory / "model.onnx"))
    return str(directory)


@pytest.fixture
def world(db, tmp_path):
    model = AIModelFactory(name="llama3.1:8b")
    grant(model.owner, model, Role.MAINTAINER)
    ModelVersionFactory(model=model, version="v1.0.0")
    served = ModelVersionFactory(
        model=model, version="v0.9.0", status=VersionStatus.ACTIVE, artifact_path=serving_artifact(tmp_path)
    )
    Alert.objects.create(pk=777, model=model, version=served, kind=AlertKind.DATA_DRIFT, message="drift")
    TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.STOPPED)
    return model


def call(client: APIClient, endpoint: Endpoint):
    return getattr(client, endpoint.method)(endpoint.path, endpoint.body, format="json")


def prepare(endpoint: Endpoint, model: AIModel) -> None:
    if endpoint.live_job:
        TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.QUEUED)
    if endpoint.experiment:
        Experiment.objects.create(
            pk=555,
            model=model,
            champion=model.versions.get(version="v0.9.0"),
            challenger=model.versions.get(version="v1.0.0"),
            state=endpoint.experiment,
        )


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_anonymous_gets_401(world, endpoint):
    response = call(APIClient(), endpoint)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_without_access_gets_404(world, api, endpoint):
    prepare(endpoint, world)
    stranger = UserFactory(role=Role.MAINTAINER)  # a role, but no access to this model
    response = call(api(stranger), endpoint)
    assert response.status_code == 404
    assert "llama3.1:8b" not in str(response.data.get("fields", ""))


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.perm != PERM_VIEW], ids=str)
def test_view_only_gets_403_on_actions(world, api, endpoint):
    prepare(endpoint, world)
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, world, Role.VIEWER)
    response = call(api(viewer), endpoint)
    assert response.status_code == 403, response.data
    assert response.data["code"] == "permission_denied"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_smallest_granted_role_succeeds(world, api, endpoint):
    prepare(endpoint, world)
    role = SMALLEST_ROLE[endpoint.perm]
    user = UserFactory(role=role)
    grant(user, world, role)
    response = call(api(user), endpoint)
    assert response.status_code == endpoint.success, response.data


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_access_through_a_group_counts(world, api, endpoint):
    """Object permissions granted to a role group reach its members."""
    prepare(endpoint, world)
    role = SMALLEST_ROLE[endpoint.perm]
    group = roles_ensure()[role]
    grant(group, world, role)
    user = UserFactory(role=role)
    response = call(api(user), endpoint)
    assert response.status_code == endpoint.success, response.data


def test_list_shows_only_permitted_models(world, api):
    mine = AIModelFactory(name="mine")
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, mine, Role.VIEWER)
    response = api(viewer).get("/api/model-management/models")
    assert response.status_code == 200
    assert [m["name"] for m in response.data["results"]] == ["mine"]


def test_superuser_sees_everything(world, api):
    admin = UserFactory(is_superuser=True)
    response = api(admin).get("/api/model-management/models")
    assert [m["name"] for m in response.data["results"]] == ["llama3.1:8b"]


def test_jobs_are_filtered_by_model_permission(world, api):
    job = TrainingJob.objects.get(model=world)
    stranger = UserFactory(role=Role.MAINTAINER)
    assert api(stranger).get("/api/model-management/jobs").data["results"] == []
    assert api(stranger).get(f"/api/model-management/jobs/{job.pk}").status_code == 404
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, world, Role.VIEWER)
    assert [j["id"] for j in api(viewer).get("/api/model-management/jobs").data["results"]] == [job.pk]
    assert api(viewer).get(f"/api/model-management/jobs/{job.pk}").status_code == 200
    assert api(viewer).get("/api/model-management/jobs/999999").status_code == 404


def test_collection_endpoints_need_authentication(db):
    for path in ("models", "jobs", "datasets", "audit-events"):
        assert APIClient().get(f"/api/model-management/{path}").status_code == 401


def test_registering_models_needs_the_maintainer_role(db, api):
    body = {"name": "new-model", "family": "multitask-mlp"}
    assert (
        api(UserFactory(role=Role.TRAINER)).post("/api/model-management/models", body, format="json").status_code == 403
    )
    creator = UserFactory(role=Role.MAINTAINER)
    response = api(creator).post("/api/model-management/models", body, format="json")
    assert response.status_code == 201
    assert response.data["owner"] == creator.username
    assert response.data["permissions"] == ["view", "finetune", "activate", "manage"]
