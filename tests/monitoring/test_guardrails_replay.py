"""A healthy version, and a deliberately degraded one, replayed over real S&P 500 bars (arch's built-in series) through
the real paths: bars appended through the API, predictions served through the API, the resolver
task the queue runs after an append (which then evaluates the guardrails), and the schedule. No
breach, no rollback, and the accuracy check does get to judge (it is not vacuously inconclusive)."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import torch

from models_mgmt import tasks
from models_mgmt.choices import GuardrailAction, Role, VersionStatus
from models_mgmt.models import Alert, GuardrailEvaluation, GuardrailPolicy, Prediction
from tests.factories import AIModelFactory, ModelVersionFactory, UserFactory, grant

from .conftest import bar_dicts, make_dataset, train

torch.set_num_threads(1)
CUTOFF = dt.date(2005, 6, 30)  # trained on 2001..mid-2005; the next (calm) year arrives month by month


@pytest.fixture
def healthy(transactional_db, settings, tmp_path, api):
    settings.ARTIFACTS_DIR = tmp_path
    dataset = make_dataset("calm-sp500", CUTOFF)
    model = AIModelFactory(name="calm-model", default_dataset=dataset)
    grant(model.owner, model, Role.MAINTAINER)
    version = train(api, model, {"epochs": 2, "startDate": "2001-01-01"})
    active = model.versions.get(version=version)
    # an earlier version to roll back to, so a breach would act
    ModelVersionFactory(
        model=model, version="v0.9.0", status=VersionStatus.DEPRECATED,
        activated_at=dt.datetime(2005, 1, 3, tzinfo=dt.UTC), artifact_path=active.artifact_path,
        checksum=active.checksum,
    )  # fmt: skip
    assert (
        api(model.owner).post(f"/api/model-management/models/{model.name}/versions/{version}/activate").status_code
        == 200
    )
    # defaults, but a latency threshold no busy test machine reaches: this test is about accuracy
    response = api(model.owner).put(
        f"/api/model-management/models/{model.name}/guardrails", {"enabled": True, "latencyP95Ms": 5000}, format="json"
    )
    assert response.status_code == 200, response.data
    return model


def test_a_healthy_replay_over_a_year_of_bars_triggers_no_rollback(api, healthy):
    model, maintainer = healthy, UserFactory(role=Role.MAINTAINER)  # may append bars and read datasets
    grant(maintainer, model, Role.VIEWER)
    client = api(maintainer)
    month = dt.date(2005, 7, 1)
    while month < dt.date(2006, 7, 1):
        end = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        bars = bar_dicts(month, end)
        response = client.post("/api/model-management/datasets/calm-sp500/bars", {"bars": bars}, format="json")
        assert response.status_code == 200, response.data
        tasks.predictions_resolve(model.default_dataset_id)  # what the append enqueues: resolve, then guardrails
        for bar in bars:
            served = client.post(
                f"/api/model-management/models/{model.name}/predict",
                {"dataset": "calm-sp500", "asOf": bar["date"]},
                format="json",
            )
            assert served.status_code == 200, served.data
        month = end + dt.timedelta(days=1)
    assert tasks.guardrail_checks_run() == [("calm-model", "ok", "none")]

    evaluations = list(GuardrailEvaluation.objects.filter(model=model).order_by("id"))
    # after each of the 11 appends that resolved predictions (the first had none to resolve), then the schedule
    assert len(evaluations) == 12
    assert {e.action for e in evaluations} == {GuardrailAction.NONE}
    assert "breach" not in {e.verdict for e in evaluations}
    last = evaluations[-1].checks["accuracy"]
    assert last["verdict"] == "ok" and min(t["count"] for t in last["tasks"]) >= 200
    assert Prediction.objects.filter(model=model, resolved_at__isnull=False).count() >= 200
    assert model.versions.get(status=VersionStatus.ACTIVE).version == "v1.0.0"
    assert GuardrailPolicy.objects.get(model=model).cooldown_until is None
    assert not Alert.objects.filter(model=model).exists()


def degraded_copy(version, directory):
    """The version's artifact with its probabilities turned around (1 - p): the same validation
    record, deliberately wrong live."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    shutil.copytree(version.artifact_path, directory)
    graph_path = directory / "model.onnx"
    graph = onnx.load(str(graph_path))
    name = graph.graph.output[0].name
    for node in graph.graph.node:
        for i, output in enumerate(node.output):
            if output == name:
                node.output[i] = f"{name}_as_trained"
    graph.graph.initializer.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), "degraded_one"))
    graph.graph.node.append(helper.make_node("Sub", ["degraded_one", f"{name}_as_trained"], [name]))
    onnx.save(graph, str(graph_path))
    return str(directory)


def test_a_degraded_version_replayed_rolls_back_within_two_evaluations(api, healthy, tmp_path):
    model, maintainer = healthy, UserFactory(role=Role.MAINTAINER)
    grant(maintainer, model, Role.VIEWER)
    client = api(maintainer)
    trained = model.versions.get(version="v1.0.0")
    ModelVersionFactory(
        model=model, version="v1.1.0", dataset=trained.dataset, performance_metrics=trained.performance_metrics,
        metadata=trained.metadata, checksum="degraded", artifact_path=degraded_copy(trained, tmp_path / "degraded"),
    )  # fmt: skip
    activated = api(model.owner).post(f"/api/model-management/models/{model.name}/versions/v1.1.0/activate")
    assert activated.status_code == 200, activated.data

    judged, seen = [], 0  # the actions of the evaluations with at least minResolved resolved predictions
    month = dt.date(2005, 7, 1)
    while month < dt.date(2006, 7, 1) and judged[-1:] != ["rolled_back"]:
        end = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        bars = bar_dicts(month, end)
        assert (
            client.post("/api/model-management/datasets/calm-sp500/bars", {"bars": bars}, format="json").status_code
            == 200
        )
        tasks.predictions_resolve(model.default_dataset_id)
        for evaluation in GuardrailEvaluation.objects.filter(model=model, pk__gt=seen).order_by("id"):
            seen = evaluation.pk
            if min(t["count"] for t in evaluation.checks["accuracy"]["tasks"]) >= 50:
                judged.append(evaluation.action)
        for bar in bars:
            body = {"dataset": "calm-sp500", "asOf": bar["date"]}
            served = client.post(f"/api/model-management/models/{model.name}/predict", body, format="json")
            assert served.status_code == 200, served.data
        month = end + dt.timedelta(days=1)

    assert judged in (["rolled_back"], ["none", "rolled_back"]), judged
    assert model.versions.get(status=VersionStatus.ACTIVE).version == "v1.0.0"
    evaluation = GuardrailEvaluation.objects.get(action=GuardrailAction.ROLLED_BACK)
    assert evaluation.version.version == "v1.1.0" and evaluation.trigger == "bars"
    assert any(row["check"] == "accuracy" for row in evaluation.checks["evidence"])
    assert Alert.objects.filter(model=model, kind="guardrail_breach", status="open").count() == 1
