"""POST models/:name/predict: outputs, the serving version, the ledger, and clear 400s."""

from __future__ import annotations

import datetime as dt

import pytest

from models_mgmt.models import Prediction
from models_mgmt.monitoring.serving import LOOKBACK_BARS
from tests.factories import AIModelFactory

from .conftest import LIVE_CUTOFF, bar_dicts

URL = "/api/model-management/models/live-model/predict"


def window(n: int, end: dt.date = LIVE_CUTOFF) -> list[dict]:
    return bar_dicts(end - dt.timedelta(days=800), end)[-n:]


def test_predict_from_bars_answers_three_outputs_and_logs_them(api, analyst):
    response = api(analyst).post(URL, {"bars": window(300)}, format="json")
    assert response.status_code == 200, response.data
    data = response.data
    assert data["version"] == "v1.0.0" and data["asOf"] == "2008-06-30" and data["horizon"] == 5
    assert set(data["outputs"]) == {"signal", "risk", "pattern"}
    for task, labels in {
        "signal": ("up", "down"),
        "risk": ("high", "normal"),
        "pattern": ("breakout", "range"),
    }.items():
        output = data["outputs"][task]
        assert 0.0 <= output["probability"] <= 1.0
        assert output["prediction"] == labels[0 if output["probability"] > 0.5 else 1]
    assert data["latencyMs"] > 0 and data["resolvesAgainst"] == "live-sp500"
    logged = Prediction.objects.get(pk=data["predictionId"])
    assert logged.version.version == "v1.0.0" and logged.as_of == dt.datetime(2008, 6, 30, tzinfo=dt.UTC)
    assert len(logged.features) == 17 and logged.outputs["signal"] == data["outputs"]["signal"]["probability"]
    assert logged.due_on == dt.datetime(2008, 7, 7, tzinfo=dt.UTC)  # 5 business days later
    assert logged.resolved_at is None


def test_predict_from_a_dataset_equals_predict_from_the_same_bars(api, analyst):
    by_bars = api(analyst).post(URL, {"bars": window(300, dt.date(2008, 3, 31))}, format="json")
    by_dataset = api(analyst).post(URL, {"dataset": "live-sp500", "asOf": "2008-03-31"}, format="json")
    assert by_bars.status_code == by_dataset.status_code == 200, (by_bars.data, by_dataset.data)
    for task in ("signal", "risk", "pattern"):
        assert by_bars.data["outputs"][task]["probability"] == pytest.approx(
            by_dataset.data["outputs"][task]["probability"], abs=1e-6
        )


def test_predict_outputs_equal_the_pytorch_model(api, analyst, live_model):
    """The ONNX session serves what the trained network computes on the same raw features."""
    import numpy as np
    import torch

    from models_mgmt.engine.artifact import load_model
    from models_mgmt.engine.bars import load_builtin
    from models_mgmt.engine.features import compute_features

    response = api(analyst).post(URL, {"dataset": "live-sp500", "asOf": "2008-05-15"}, format="json")
    frame = load_builtin("sp500")
    frame = frame[frame.index <= dt.date(2008, 5, 15)].iloc[-(LOOKBACK_BARS + 200) :]
    raw = compute_features(frame).iloc[-1].to_numpy(dtype=np.float64)
    net, normalization = load_model(live_model.versions.get().artifact_path)
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(normalization.apply(raw[np.newaxis, :])))).numpy()[0]
    served = [response.data["outputs"][t]["probability"] for t in ("signal", "risk", "pattern")]
    assert served == pytest.approx(list(expected), abs=1e-5)


def broken(mutate) -> list[dict]:
    bars = window(100)
    mutate(bars)
    return bars


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"bars": window(LOOKBACK_BARS - 1)}, "bars", f"at least {LOOKBACK_BARS}"),
        ({"bars": window(100)[::-1]}, "bars", "ascending"),
        ({"bars": broken(lambda b: b.__setitem__(5, dict(b[4])))}, "bars", "duplicate"),
        ({"bars": broken(lambda b: b[7].update(high=1.0))}, "bars", "High is below"),
        ({"bars": broken(lambda b: b[3].update(close=-5))}, "bars", "positive"),
        ({"bars": broken(lambda b: b[2].pop("volume"))}, "bars", "required"),
        ({"bars": broken(lambda b: b[2].update(date="yesterday"))}, "bars", "Date has wrong format"),
        ({"bars": broken(lambda b: b[9].update(extra=1))}, "bars", "unknown"),
        ({"bars": window(100), "asOf": "2008-01-02"}, "asOf", "not both"),
        ({}, "bars", "dataset and asOf"),
        ({"dataset": "live-sp500"}, "asOf", "required"),
        ({"dataset": "live-sp500", "asOf": "1990-01-01"}, "asOf", "no bars"),
        ({"dataset": "live-sp500", "asOf": "1999-02-01"}, "asOf", f"at least {LOOKBACK_BARS}"),
        ({"bars": [dict(b, open=100, high=100, low=100, close=100) for b in window(100)]}, "bars", "undefined"),
    ],
)
def test_bad_windows_get_400_naming_the_field(api, analyst, body, field, words):
    response = api(analyst).post(URL, body, format="json")
    assert response.status_code == 400, response.data
    assert response.data["code"] == "invalid"
    assert field in response.data["fields"]
    assert words in str(response.data["fields"][field])
    assert not Prediction.objects.exists()


def test_unknown_dataset_is_404(api, analyst):
    response = api(analyst).post(URL, {"dataset": "nope", "asOf": "2008-01-02"}, format="json")
    assert response.status_code == 404


def test_a_model_without_an_active_version_answers_409(api, live_model):
    other = AIModelFactory(name="idle-model", owner=live_model.owner)
    from models_mgmt.choices import Role
    from tests.factories import grant

    grant(other.owner, other, Role.MAINTAINER)
    response = api(other.owner).post(
        "/api/model-management/models/idle-model/predict", {"bars": window(100)}, format="json"
    )
    assert response.status_code == 409 and response.data["code"] == "no_active_version"
