"""Intraday bars for real: an hourly dataset is stored by timestamp, trained on with horizons and
annualisation in hourly bars, served, resolved per bar, watched for drift and compared.

The hourly bars are derived from real daily S&P 500 bars (`tests/hourly.py`); the daily path is
covered unchanged by the rest of tests/monitoring.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from models_mgmt.choices import Role
from models_mgmt.engine.evaluation import backtest
from models_mgmt.engine.labels import compute_labels
from models_mgmt.models import Dataset, ModelVersion, Prediction
from models_mgmt.monitoring.predictions import predictions_resolve
from tests.factories import AIModelFactory, UserFactory, grant
from tests.hourly import bar_dicts, csv_of, hourly_frame

from .conftest import train

DATASETS = "/api/model-management/datasets"
MODEL = "/api/model-management/models/hourly-model"
SESSIONS = 400
KEPT_BACK = 14  # two sessions arrive later through the API


@pytest.fixture(scope="module")
def hourly():
    return hourly_frame(SESSIONS)


def upload(api, user, content: bytes, *, name: str, timeframe: str):
    data = {"name": name, "symbol": "^GSPC", "timeframe": timeframe,
            "file": SimpleUploadedFile("bars.csv", content, content_type="text/csv")}  # fmt: skip
    return api(user).post(DATASETS, data, format="multipart")


@pytest.fixture
def maintainer(transactional_db):
    return UserFactory(role=Role.MAINTAINER)


@pytest.fixture
def hourly_model(transactional_db, settings, tmp_path, api, hourly, maintainer):
    """`hourly-model` v1.0.0 trained (2 epochs) on an hourly dataset without its last 2 sessions."""
    settings.ARTIFACTS_DIR = tmp_path
    response = upload(api, maintainer, csv_of(hourly.iloc[:-KEPT_BACK]), name="spx-1h", timeframe="1h")
    assert response.status_code == 201, response.content[:500]
    model = AIModelFactory(name="hourly-model", default_dataset=Dataset.objects.get(name="spx-1h"))
    grant(model.owner, model, Role.MAINTAINER)
    start = hourly.index[300].isoformat()  # a timestamp bounds the training window exactly
    version = train(api, model, {"epochs": 2, "startDate": start})
    assert api(model.owner).post(f"{MODEL}/versions/{version}/activate").status_code == 200
    return model


def test_an_hourly_file_is_stored_by_timestamp(api, maintainer, hourly):
    response = upload(api, maintainer, csv_of(hourly.iloc[:700]), name="spx-1h", timeframe="1h")

    assert response.status_code == 201, response.content[:500]
    body = response.json()
    assert body["timeframe"] == "1h" and body["barCount"] == 700 and body["barsPerYear"] == 252 * 7
    assert body["firstTimestamp"] == hourly.index[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["lastTimestamp"] == hourly.index[699].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["columns"]["used"]["timestamp"] == "Unnamed: 0"
    stored = Dataset.objects.get(name="spx-1h").bars.order_by("timestamp")
    assert [b.timestamp for b in stored] == [t.to_pydatetime() for t in hourly.index[:700]]
    recent = api(maintainer).get(f"{DATASETS}/spx-1h").json()["recentBars"]
    assert set(recent[-1]) == {"timestamp", "open", "high", "low", "close", "volume"}
    assert recent[-1]["timestamp"] == body["lastTimestamp"]


def test_an_hourly_file_uploaded_as_daily_names_the_cause_once(api, maintainer, hourly):
    response = upload(api, maintainer, csv_of(hourly.iloc[:700]), name="spx-1h", timeframe="1d")

    assert response.status_code == 400
    file = response.json()["fields"]["file"]
    assert file["total"] == 1 and len(file["errors"]) == 1  # not one "duplicate date" per hour
    assert "intraday" in file["message"] and "timeframe 1h" in file["message"]
    assert not Dataset.objects.filter(name="spx-1h").exists()


@pytest.mark.parametrize(
    ("timeframe", "daily", "says"),
    [("5m", False, "60 minutes apart"), ("4h", False, "timeframe 1h"), ("1h", True, "timeframe 1d")],
)
def test_bars_must_be_of_the_declared_timeframe(api, maintainer, hourly, timeframe, daily, says):
    frame = hourly.iloc[:70]
    if daily:
        frame = frame.iloc[::7].copy()
        frame.index = frame.index.normalize()
    response = upload(api, maintainer, csv_of(frame), name="wrong", timeframe=timeframe)

    assert response.status_code == 400
    assert says in response.json()["fields"]["file"]["message"]


def test_training_counts_horizon_windows_and_annualisation_in_hourly_bars(hourly_model, hourly):
    version = ModelVersion.objects.get(model=hourly_model)
    train_window, validation_window = version.metadata["trainWindow"], version.metadata["validationWindow"]
    assert train_window[0] >= hourly.index[300].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all("T" in t and t.endswith("Z") for t in (*train_window, *validation_window))
    assert train_window[1] < validation_window[0]
    assert version.backtest["barsPerYear"] == 252 * 7
    job = hourly_model.jobs.get()
    assert job.config["startDate"] == hourly.index[300].strftime("%Y-%m-%dT%H:%M:%SZ")


def test_annualisation_scales_with_bars_per_year():
    rng = np.random.default_rng(1)
    p_up, returns = rng.random(500), rng.normal(0.0002, 0.004, 500)
    daily = backtest(p_up, returns, fee=0.0005, periods_per_year=252)
    hourly = backtest(p_up, returns, fee=0.0005, periods_per_year=252 * 7)
    assert (daily["barsPerYear"], hourly["barsPerYear"]) == (252, 1764)
    assert hourly["sharpe"] == pytest.approx(daily["sharpe"] * math.sqrt(7), rel=1e-5)
    assert hourly["buyHoldSharpe"] == pytest.approx(daily["buyHoldSharpe"] * math.sqrt(7), rel=1e-5)


def test_predictions_resolve_per_bar_across_the_overnight_gap(api, hourly_model, hourly, maintainer):
    analyst = UserFactory(role=Role.VIEWER)
    grant(analyst, hourly_model, Role.VIEWER)
    last = hourly.index[-KEPT_BACK - 1]  # 20:30 UTC, the last bar of a session
    response = api(analyst).post(f"{MODEL}/predict", {"dataset": "spx-1h", "asOf": last.isoformat()}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["asOf"] == last.strftime("%Y-%m-%dT%H:%M:%SZ") and response.data["horizon"] == 5
    assert response.data["horizonDueOn"] == (last + dt.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # A date as asOf means the close of that day: its last hourly bar.
    by_day = api(analyst).post(f"{MODEL}/predict", {"dataset": "spx-1h", "asOf": str(last.date())}, format="json")
    assert by_day.data["asOf"] == response.data["asOf"]
    earlier = hourly.index[-KEPT_BACK - 30]
    api(analyst).post(f"{MODEL}/predict", {"dataset": "spx-1h", "asOf": earlier.isoformat()}, format="json")

    assert predictions_resolve() == 1  # the earlier one: its 5 bars are stored; the last has none yet
    assert Prediction.objects.filter(resolved_at__isnull=True).count() == 2

    appended = api(maintainer).post(f"{DATASETS}/spx-1h/bars", {"bars": bar_dicts(hourly.iloc[-KEPT_BACK:])},
                                    format="json")  # fmt: skip
    assert appended.status_code == 200, appended.data
    assert appended.data["added"] == KEPT_BACK
    assert appended.data["lastTimestamp"] == hourly.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert predictions_resolve() == 2

    truth = compute_labels(hourly, horizon=5, breakout_window=20)
    for prediction in Prediction.objects.all():
        position = hourly.index.get_loc(prediction.as_of)
        # The horizon is 5 hourly bars, across the night: the 5th bar after 20:30 is 18:30 next session.
        assert prediction.horizon_end == hourly.index[position + 5].to_pydatetime()
        expected = truth.iloc[position]
        assert prediction.labels == {t: int(expected[t]) for t in ("signal", "risk", "pattern")}
    resolved = Prediction.objects.filter(as_of=last.to_pydatetime()).first()
    assert resolved.horizon_end.hour == 18 and resolved.horizon_end.date() > last.date()


def test_bars_must_be_keyed_as_the_dataset_keys_them(api, hourly_model, hourly, maintainer):
    analyst = UserFactory(role=Role.VIEWER)
    grant(analyst, hourly_model, Role.VIEWER)
    window = bar_dicts(hourly.iloc[-300:-KEPT_BACK])
    served = api(analyst).post(f"{MODEL}/predict", {"bars": window}, format="json")
    assert served.status_code == 200, served.data
    assert served.data["asOf"] == hourly.index[-KEPT_BACK - 1].strftime("%Y-%m-%dT%H:%M:%SZ")

    dated = [{"date": window[-1]["timestamp"][:10], **{k: v for k, v in window[-1].items() if k != "timestamp"}}]
    refused = api(maintainer).post(f"{DATASETS}/spx-1h/bars", {"bars": dated}, format="json")
    assert refused.status_code == 400 and "give `timestamp`" in str(refused.data["fields"]["bars"])
    mixed = api(maintainer).post(f"{DATASETS}/spx-1h/bars", {"bars": [window[-2], *dated]}, format="json")
    assert mixed.status_code == 400 and "not a mix" in str(mixed.data["fields"]["bars"])


def test_drift_and_comparison_speak_in_hourly_bars(api, hourly_model, settings):
    owner = hourly_model.owner
    drift = api(owner).get(f"{MODEL}/drift")
    assert drift.status_code == 200, drift.data
    assert drift.data["status"] == "computed"
    window = drift.data["window"]
    assert window["bars"] == settings.MONITORING_DRIFT_WINDOW_BARS
    assert window["start"].endswith("Z") and window["end"].endswith("Z")
    assert drift.data["reference"]["start"].endswith("Z")

    version = ModelVersion.objects.get(model=hourly_model)
    start, end = version.metadata["validationWindow"]
    compared = api(owner).get(f"{MODEL}/comparison", {"start": start, "end": end})
    assert compared.status_code == 200, compared.data
    held = compared.data["heldOut"]
    assert held["status"] == "computed", held
    result = held["results"][version.version]
    assert result["start"] >= start and result["end"] <= end and result["seenInTraining"] is False
    assert result["backtest"]["barsPerYear"] == 252 * 7
