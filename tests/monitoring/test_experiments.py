"""Shadow experiments end to end on real S&P 500 bars: the challenger is scored on every predict
and logged beside the champion; as labels resolve the paired comparison decides (or not), and
promotion goes through activation, audited, and respects the guardrails' cooldown."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from models_mgmt import tasks
from models_mgmt.choices import AlertKind, ExperimentState, Role, VersionStatus
from models_mgmt.engine.bars import load_builtin
from models_mgmt.models import Alert, AuditEvent, Experiment, GuardrailPolicy, ModelVersion, Prediction
from models_mgmt.monitoring import serving
from models_mgmt.monitoring.predictions import prediction_make
from models_mgmt.selectors import ai_model_to_serve
from tests.factories import AIModelFactory, ModelVersionFactory, UserFactory, grant

from .conftest import LIVE_CUTOFF, make_dataset

API = "/api/model-management"
SHADOW_DAYS = [d for d in load_builtin("sp500").index if dt.date(2007, 7, 1) <= d <= dt.date(2008, 6, 20)]


def constant_artifact(directory: Path, probabilities: tuple[float, float, float]) -> str:
    """A real ONNX artifact (raw features in) answering the same probabilities for every window."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    directory.mkdir(parents=True)
    logits = np.log(np.asarray(probabilities) / (1 - np.asarray(probabilities))).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["product"]),
            helper.make_node("Add", ["product", "b"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
        ],
        "constant",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 17])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(np.zeros((17, 3), dtype=np.float32), name="w"),
            numpy_helper.from_array(logits, name="b"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(directory / "model.onnx"))
    return str(directory)


@pytest.fixture(autouse=True)
def _no_webhook(settings):
    settings.ALERT_WEBHOOK_URL = ""


@pytest.fixture
def duel(db, tmp_path):
    """`duel` on real S&P bars up to mid-2008: v1.0.0 (active) always says signal 0.99 (overconfident),
    v1.1.0 says 0.5; both say 0.5 on risk and pattern. v1.1.0 is built to be better on signal only."""
    dataset = make_dataset("live-sp500", LIVE_CUTOFF)
    model = AIModelFactory(name="duel", default_dataset=dataset, owner=UserFactory(role=Role.MAINTAINER))
    grant(model.owner, model, Role.MAINTAINER)
    for version, signal, status in (("v1.0.0", 0.99, VersionStatus.ACTIVE), ("v1.1.0", 0.5, VersionStatus.READY)):
        ModelVersionFactory(
            model=model,
            version=version,
            status=status,
            dataset=dataset,
            checksum=version,
            artifact_path=constant_artifact(tmp_path / version, (signal, 0.5, 0.5)),
            activated_at=timezone.now() if status == VersionStatus.ACTIVE else None,
        )
    return model


def start(api, model, **body):
    response = api(model.owner).post(f"{API}/models/{model.name}/experiments", body, format="json")
    assert response.status_code == 201, response.data
    return response.data


def serve_days(model, days=SHADOW_DAYS) -> None:
    """One predict per day, through the same lookup and service the endpoint uses."""
    for day in days:
        prediction_make(model=ai_model_to_serve(model.owner, model.name), dataset=model.default_dataset, as_of=day)


def test_predict_scores_the_challenger_in_shadow_and_answers_as_before(api, duel):
    experiment = start(api, duel, challenger="v1.1.0")
    assert experiment["state"] == "running" and experiment["champion"] == "v1.0.0"
    client = api(duel.owner)
    body = {"dataset": "live-sp500", "asOf": "2008-03-31"}
    plain = client.post(f"{API}/models/duel/predict", body, format="json")
    assert plain.status_code == 200 and "shadow" not in plain.data
    assert plain.data["version"] == "v1.0.0" and plain.data["outputs"]["signal"]["probability"] == 0.99
    asked = client.post(f"{API}/models/duel/predict?shadow=1", body, format="json").data
    assert asked["shadow"] == {
        "experimentId": experiment["id"],
        "version": "v1.1.0",
        "outputs": {"signal": 0.5, "risk": 0.5, "pattern": 0.5},
    }
    assert client.post(f"{API}/models/duel/predict", {**body, "shadow": True}, format="json").data["shadow"]
    row = Prediction.objects.get(pk=plain.data["predictionId"])
    assert row.experiment_id == experiment["id"]
    assert row.outputs["signal"] == 0.99 and row.challenger_outputs == {"signal": 0.5, "risk": 0.5, "pattern": 0.5}

    assert [key[1] for key in serving.cached_keys()] == ["v1.0.0", "v1.1.0"]

    client.post(f"{API}/experiments/{experiment['id']}/stop")
    after = client.post(f"{API}/models/duel/predict?shadow=1", body, format="json").data
    assert after["shadow"] is None
    assert Prediction.objects.get(pk=after["predictionId"]).challenger_outputs is None
    assert [key[1] for key in serving.cached_keys()] == ["v1.0.0"]  # the challenger's session is let go


def test_a_better_challenger_is_detected_and_a_maintainer_promotes_it(api, duel):
    experiment = start(api, duel, challenger="v1.1.0", alpha=0.05)
    serve_days(duel)
    assert tasks.predictions_resolve(dataset_id=duel.default_dataset.pk) == len(SHADOW_DAYS)  # all labelled
    found = api(duel.owner).get(f"{API}/experiments/{experiment['id']}").data
    assert found["state"] == "challenger_better", found["reason"]
    signal = next(t for t in found["tasks"] if t["task"] == "signal")
    assert signal["lower"] > 0 and signal["days"] == len(SHADOW_DAYS) and signal["history"][-1]["lower"] > 0
    assert all(t["meanDifference"] == 0 for t in found["tasks"] if t["task"] != "signal")
    assert found["alphaPerTask"] == pytest.approx(0.05 / 3)
    alert = Alert.objects.get(model=duel, kind=AlertKind.EXPERIMENT_DECIDED)
    assert "challenger better" in alert.message and alert.recommendation == "promote"
    assert ModelVersion.objects.get(model=duel, status=VersionStatus.ACTIVE).version == "v1.0.0"  # not automatic

    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, duel, Role.VIEWER)
    assert api(viewer).post(f"{API}/experiments/{experiment['id']}/promote").status_code == 403
    promoted = api(duel.owner).post(f"{API}/experiments/{experiment['id']}/promote")
    assert promoted.status_code == 200, promoted.data
    assert promoted.data["state"] == "promoted"
    assert ModelVersion.objects.get(model=duel, status=VersionStatus.ACTIVE).version == "v1.1.0"
    served = api(duel.owner).post(
        f"{API}/models/duel/predict", {"dataset": "live-sp500", "asOf": "2008-06-27"}, format="json"
    )
    assert served.data["version"] == "v1.1.0" and [key[1] for key in serving.cached_keys()] == ["v1.1.0"]
    actions = list(AuditEvent.objects.filter(ai_model=duel).order_by("id").values_list("action", "actor"))
    assert [a for a, _ in actions] == [
        "experiment.started",
        "experiment.decided",
        "alert.opened",
        "experiment.promoted",
        "version.activated",
    ]
    assert actions[-1][1] == actions[-2][1] == duel.owner.pk
    again = api(duel.owner).post(f"{API}/experiments/{experiment['id']}/promote")
    assert again.status_code == 409


def test_a_worse_challenger_is_called_worse(api, duel):
    ModelVersion.objects.filter(model=duel).update(status=VersionStatus.READY)
    ModelVersion.objects.filter(model=duel, version="v1.1.0").update(status=VersionStatus.ACTIVE)
    experiment = start(api, duel, challenger="v1.0.0")
    serve_days(duel)
    tasks.predictions_resolve(dataset_id=duel.default_dataset.pk)
    assert Experiment.objects.get(pk=experiment["id"]).state == ExperimentState.CHALLENGER_WORSE


def test_auto_promotion_promotes_unless_the_guardrail_cooldown_blocks_it(api, duel):
    GuardrailPolicy.objects.create(model=duel, cooldown_until=timezone.now() + dt.timedelta(hours=5))
    blocked = start(api, duel, challenger="v1.1.0", autoPromote=True)
    serve_days(duel)
    tasks.predictions_resolve(dataset_id=duel.default_dataset.pk)
    experiment = Experiment.objects.get(pk=blocked["id"])
    assert experiment.state == ExperimentState.CHALLENGER_BETTER
    assert "guardrail" in experiment.reason
    assert ModelVersion.objects.get(model=duel, status=VersionStatus.ACTIVE).version == "v1.0.0"

    # Without the cooldown the next experiment's verdict promotes on its own, audited as the system's.
    GuardrailPolicy.objects.filter(model=duel).update(cooldown_until=None)
    Prediction.objects.all().delete()
    automatic = start(api, duel, challenger="v1.1.0", autoPromote=True)
    serve_days(duel)
    tasks.predictions_resolve(dataset_id=duel.default_dataset.pk)
    assert Experiment.objects.get(pk=automatic["id"]).state == ExperimentState.PROMOTED
    activated = AuditEvent.objects.filter(ai_model=duel, action="version.activated").get()
    assert activated.actor is None and "autoPromote" in activated.after["reason"]


def test_activating_another_version_by_hand_stops_the_experiment(api, duel):
    experiment = start(api, duel, challenger="v1.1.0")
    ModelVersionFactory(model=duel, version="v1.2.0")
    assert api(duel.owner).post(f"{API}/models/duel/versions/v1.2.0/activate").status_code == 200
    stopped = Experiment.objects.get(pk=experiment["id"])
    assert stopped.state == ExperimentState.STOPPED and "v1.2.0 was activated" in stopped.reason
    assert AuditEvent.objects.filter(action="experiment.stopped", actor=duel.owner).exists()


def test_starting_is_validated_and_one_runs_at_a_time(api, duel, tmp_path):
    url = f"{API}/models/duel/experiments"
    client = api(duel.owner)
    ModelVersionFactory(model=duel, version="v0.1.0")  # no artifact
    for body, field in (
        ({"challenger": "v9.9.9"}, "challenger"),
        ({"challenger": "v0.1.0"}, "challenger"),
        ({"challenger": "v1.1.0", "alpha": 0}, "alpha"),
        ({"challenger": "v1.1.0", "alpha": 0.6}, "alpha"),
        ({"challenger": "v1.1.0", "maxDays": 0}, "maxDays"),
        ({"challenger": "v1.1.0", "autoPromote": "yes"}, "autoPromote"),
        ({"challenger": "v1.1.0", "champion": "v1.0.0"}, "champion"),
    ):
        response = client.post(url, body, format="json")
        assert response.status_code == 400 and field in response.data["fields"], (body, response.data)
    assert not Experiment.objects.exists()
    start(api, duel, challenger="v1.1.0")
    second = client.post(url, {"challenger": "v1.0.0"}, format="json")
    assert second.status_code == 409 and second.data["code"] == "experiment_running"
    listed = client.get(url).data
    assert [e["challenger"] for e in listed] == ["v1.1.0"] and "history" not in str(listed)
    stranger = UserFactory(role=Role.MAINTAINER)
    assert api(stranger).get(f"{API}/experiments/{listed[0]['id']}").status_code == 404
    assert api(stranger).post(f"{API}/experiments/{listed[0]['id']}/stop").status_code == 404


def test_an_a_a_experiment_on_real_sp500_data_declares_nothing(api, live_model, analyst):
    """The trained version against itself: every paired difference is 0; at its budget the
    experiment ends inconclusive, and the champion keeps serving."""
    experiment = start(api, live_model, challenger="v1.0.0", maxDays=100)
    days = [d for d in load_builtin("sp500").index if dt.date(2008, 1, 1) <= d <= dt.date(2008, 6, 20)]
    for day in days:
        response = api(analyst).post(
            f"{API}/models/live-model/predict", {"dataset": "live-sp500", "asOf": day.isoformat()}, format="json"
        )
        assert response.status_code == 200 and "shadow" not in response.data
    rows = Prediction.objects.filter(experiment_id=experiment["id"])
    assert rows.count() == len(days) and all(p.challenger_outputs == p.outputs for p in rows)
    assert len(serving.cached_keys()) == 1  # A/A: one session serves both
    tasks.predictions_resolve(dataset_id=live_model.default_dataset.pk)
    found = api(analyst).get(f"{API}/experiments/{experiment['id']}").data
    assert found["state"] == "inconclusive", found["reason"]
    assert all(t["meanDifference"] == 0 and t["lower"] < 0 < t["upper"] for t in found["tasks"])
    assert {t["task"] for t in found["tasks"]} == {"signal", "risk", "pattern"}


def test_deleting_a_model_deletes_its_experiments(api, duel):
    start(api, duel, challenger="v1.1.0")
    serve_days(duel, SHADOW_DAYS[:3])
    response = api(duel.owner).delete(f"{API}/models/duel")
    assert response.status_code == 204, response.data
    assert not Experiment.objects.exists() and not Prediction.objects.exists()
