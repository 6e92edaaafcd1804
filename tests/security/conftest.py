"""Two maintainers, each the owner of one model with versions, jobs, an alert and audit events."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from models_mgmt.choices import AlertKind, JobStatus, Role, VersionStatus
from models_mgmt.models import AIModel, Alert, Experiment, ModelVersion, TrainingJob
from tests.api.test_permission_matrix import serving_artifact
from tests.conftest import bearer
from tests.factories import AIModelFactory, ModelVersionFactory, TrainingJobFactory, UserFactory, grant


@dataclass
class Owned:
    user: object
    model: AIModel
    active: ModelVersion
    ready: ModelVersion
    finished_job: TrainingJob
    live_job: TrainingJob
    alert: Alert

    @property
    def base(self) -> str:
        return f"/api/model-management/models/{self.model.name}"


def build_owner(username: str, model_name: str, artifacts: Path, *, alert_id: int, accuracy: float) -> Owned:
    """An owner who holds every permission on their model, and an audit trail made through the API."""
    user = UserFactory(username=username, role=Role.MAINTAINER)
    model = AIModelFactory(name=model_name, owner=user, description=f"private notes of {username}")
    grant(user, model, Role.MAINTAINER)
    artifacts.mkdir(parents=True, exist_ok=True)
    active = ModelVersionFactory(
        model=model,
        version="v1.0.0",
        status=VersionStatus.ACTIVE,
        accuracy=accuracy,
        artifact_path=serving_artifact(artifacts),
    )
    ready = ModelVersionFactory(model=model, version="v1.1.0", status=VersionStatus.READY, accuracy=accuracy + 0.01)
    finished = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.STOPPED)
    live = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.QUEUED)
    alert = Alert.objects.create(
        pk=alert_id, model=model, version=active, kind=AlertKind.DATA_DRIFT, message=f"drift on the model of {username}"
    )
    # A real audit event of this model, written by the service behind the API.
    response = bearer(user).patch(
        f"/api/model-management/models/{model_name}", {"description": f"edited by {username}"}
    )
    assert response.status_code == 200, response.content
    return Owned(user, model, active, ready, finished, live, alert)


def build_pair(tmp_path: Path) -> tuple[Owned, Owned]:
    # Alice's model carries the name and alert id the permission matrix's ENDPOINTS address.
    alice = build_owner("alice", "llama3.1:8b", tmp_path / "alice", alert_id=777, accuracy=0.61)
    # ... and the experiment id: a shadow experiment of an earlier version behind her active one.
    (tmp_path / "alice-v0.9.0").mkdir()
    challenger = ModelVersionFactory(
        model=alice.model,
        version="v0.9.0",
        status=VersionStatus.DEPRECATED,
        artifact_path=serving_artifact(tmp_path / "alice-v0.9.0"),
    )
    Experiment.objects.create(pk=555, model=alice.model, champion=alice.active, challenger=challenger)
    bob = build_owner("bob", "bob-model", tmp_path / "bob", alert_id=888, accuracy=0.71)
    return alice, bob


@pytest.fixture
def owners(db, tmp_path) -> tuple[Owned, Owned]:
    return build_pair(tmp_path)


@pytest.fixture
def ws_owners(transactional_db, tmp_path) -> tuple[Owned, Owned]:
    return build_pair(tmp_path)


def fresh_token(user) -> str:
    return str(AccessToken.for_user(user))  # no database write: usable in async code
