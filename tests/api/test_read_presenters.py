"""The hot reads (model list, model detail, version list) build their rows without DRF's
per-row ModelSerializer machinery; their JSON must stay byte for byte what the serializers,
which still document the schema, would produce for the same rows."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.renderers import JSONRenderer

from models_mgmt import selectors
from models_mgmt.api.serializers import AIModelDetailSerializer, AIModelSerializer, ModelVersionSerializer
from models_mgmt.choices import JobStatus, Role, VersionStatus
from tests.factories import AIModelFactory, DatasetFactory, ModelVersionFactory, TrainingJobFactory, UserFactory, grant

BASE = "/api/model-management"


class _Request:
    def __init__(self, user) -> None:
        self.user = user


@pytest.fixture
def registry(db):
    """Every relation the rows show: owner, default dataset (and none), parent versions, version
    datasets (and none), null fields, an active version, live jobs (and none), JSON of every kind."""
    user = UserFactory(role=Role.MAINTAINER)
    other = UserFactory(role=Role.MAINTAINER)
    eurusd = DatasetFactory(name="eurusd", bars=30)
    busy = AIModelFactory(name="busy", owner=user, base_model="llama3", description="trains often")
    idle = AIModelFactory(name="idle", owner=other, default_dataset=None, description="")
    AIModelFactory(name="hidden", owner=other)  # not granted: never shown
    grant(user, busy, Role.MAINTAINER)
    grant(user, idle, Role.VIEWER)

    when = dt.datetime(2024, 3, 1, 14, 30, 5, 123456, tzinfo=dt.UTC)
    root = ModelVersionFactory(
        model=busy,
        version="v1.0.0",
        status=VersionStatus.DEPRECATED,
        dataset=busy.default_dataset,
        training_data_size=250,
        trained_at=when,
        activated_at=when + dt.timedelta(hours=1),
        checksum="ab" * 32,
        baselines={"buyAndHold": {"sharpe": 0.4}, "naive": None},
        backtest={"sharpe": 1.25, "cumulativeReturn": 0.1, "maxDrawdown": -0.05, "trades": [1, 2]},
        metadata={"loss": 0.5, "epochs": 10, "extra": {"nested": [1, "two", None]}, "trainingDuration": 2.5},
    )
    active = ModelVersionFactory(
        model=busy,
        version="v1.1.0",
        status=VersionStatus.ACTIVE,
        parent=root,
        dataset=eurusd,
        accuracy=0.6123456789,
        response_time_ms=0.75,
        trained_at=when + dt.timedelta(days=1),
        activated_at=dt.datetime(2024, 3, 2, 9, 0, tzinfo=dt.UTC),
        performance_metrics={"patternRecognition": 0.7, "overallScore": 0.61, "unknownKey": 3},
        metadata={"hyperparameters": {"lr": 0.001}, "validationAccuracy": 0.59},
    )
    ModelVersionFactory(  # every nullable field null, empty JSON
        model=busy,
        version="v1.2.0",
        status=VersionStatus.FAILED,
        parent=active,
        dataset=None,
        accuracy=None,
        response_time_ms=None,
        trained_at=None,
        activated_at=None,
        performance_metrics={},
        metadata={},
    )
    ModelVersionFactory(model=idle, version="v0.1.0", status=VersionStatus.READY)
    TrainingJobFactory(model=busy, dataset=eurusd, status=JobStatus.RUNNING)
    TrainingJobFactory(model=busy, dataset=eurusd, status=JobStatus.QUEUED, study_role="trial")  # two live: first
    TrainingJobFactory(model=idle, dataset=eurusd, status=JobStatus.SUCCEEDED)
    return user


def render(data) -> bytes:
    return JSONRenderer().render(data)


def page(results) -> dict:
    return {"count": len(results), "next": None, "previous": None, "results": results}


def test_model_list_is_the_serializers_output(api, registry):
    response = api(registry).get(f"{BASE}/models")
    assert response.status_code == 200
    expected = AIModelSerializer(selectors.ai_model_list(registry), many=True).data
    assert [row["name"] for row in expected] == ["busy", "idle"]
    assert response.content == render(page(expected))


@pytest.mark.parametrize("name", ["busy", "idle"])
def test_model_detail_is_the_serializers_output(api, registry, name):
    response = api(registry).get(f"{BASE}/models/{name}")
    assert response.status_code == 200
    model = selectors.ai_model_detail(registry, name)
    expected = AIModelDetailSerializer(model, context={"request": _Request(registry)}).data
    assert response.content == render(expected)


@pytest.mark.parametrize("name", ["busy", "idle"])
def test_version_list_is_the_serializers_output(api, registry, name):
    response = api(registry).get(f"{BASE}/models/{name}/versions")
    assert response.status_code == 200
    expected = ModelVersionSerializer(selectors.model_version_list(registry, name), many=True).data
    assert response.content == render(page(expected))


def test_version_list_pages_are_the_serializers_output(api, registry):
    response = api(registry).get(f"{BASE}/models/busy/versions?pageSize=2&page=2")
    assert response.status_code == 200
    rows = ModelVersionSerializer(selectors.model_version_list(registry, "busy"), many=True).data
    assert response.json()["count"] == 3
    assert response.content.endswith(b',"results":' + render(rows[2:]) + b"}")


def test_hidden_model_is_not_found(api, registry):
    client = api(registry)
    assert client.get(f"{BASE}/models/hidden").status_code == 404
    assert client.get(f"{BASE}/models/hidden/versions").status_code == 404
