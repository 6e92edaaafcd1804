"""Bars arrive later than predictions: appending, resolving against them, live accuracy."""

from __future__ import annotations

import datetime as dt

from models_mgmt.choices import Role
from models_mgmt.engine.bars import load_builtin
from models_mgmt.engine.labels import compute_labels
from models_mgmt.models import AuditEvent, Dataset, Prediction
from models_mgmt.monitoring.predictions import predictions_resolve
from tests.factories import UserFactory

from .conftest import LIVE_CUTOFF, bar_dicts

MODEL = "/api/model-management/models/live-model"
BARS = "/api/model-management/datasets/live-sp500/bars"
JULY = (dt.date(2008, 7, 1), dt.date(2008, 7, 31))


def test_appending_bars_is_validated_idempotent_and_audited(api, live_model):
    owner = UserFactory(role=Role.MAINTAINER)
    july = bar_dicts(*JULY)
    response = api(owner).post(BARS, {"bars": july}, format="json")
    assert response.status_code == 200, response.data
    assert (response.data["added"], response.data["unchanged"], response.data["lastDate"]) == (
        len(july),
        0,
        "2008-07-31",
    )
    again = api(owner).post(BARS, {"bars": july[-3:]}, format="json")
    assert (again.status_code, again.data["added"], again.data["unchanged"]) == (200, 0, 3)
    changed = dict(july[-1], close=july[-1]["close"] * 0.9, low=july[-1]["low"] * 0.8)
    conflict = api(owner).post(BARS, {"bars": [changed]}, format="json")
    assert conflict.status_code == 409 and conflict.data["code"] == "bar_conflict"
    gap = api(owner).post(BARS, {"bars": [dict(july[0], date="2008-06-29")]}, format="json")  # a Sunday, before the end
    assert gap.status_code == 400 and "not after the last bar" in str(gap.data["fields"]["bars"])
    bad = api(owner).post(BARS, {"bars": [dict(july[0], date="2008-08-01", high=1.0)]}, format="json")
    assert bad.status_code == 400 and "High is below" in str(bad.data["fields"]["bars"])
    dataset = Dataset.objects.get(name="live-sp500")
    assert dataset.last_date == dt.date(2008, 7, 31) and dataset.bars.count() == dataset.bar_count
    assert AuditEvent.objects.filter(action="dataset.bars_appended").count() == 1


def test_appending_needs_the_change_dataset_permission(api, live_model):
    trainer = UserFactory(role=Role.TRAINER)
    response = api(trainer).post(BARS, {"bars": bar_dicts(*JULY)}, format="json")
    assert response.status_code == 403
    assert Dataset.objects.get(name="live-sp500").last_date == LIVE_CUTOFF


def test_predictions_resolve_when_their_horizon_bars_arrive(api, live_model, analyst):
    days = [d for d in load_builtin("sp500").index if dt.date(2008, 4, 1) <= d <= LIVE_CUTOFF]
    for day in days:
        response = api(analyst).post(
            f"{MODEL}/predict", {"dataset": "live-sp500", "asOf": day.isoformat()}, format="json"
        )
        assert response.status_code == 200, response.data
    # Horizon 5: the last 5 predictions cannot be resolved from the bars present.
    assert predictions_resolve() == len(days) - 5
    assert Prediction.objects.filter(resolved_at__isnull=True).count() == 5
    metrics = api(analyst).get(f"{MODEL}/metrics").data["live"]
    assert metrics["pending"] == 5 and metrics["resolved"] == len(days) - 5

    # The next bars arrive: labels come late, and then all resolve.
    appended = api(UserFactory(role=Role.MAINTAINER)).post(BARS, {"bars": bar_dicts(*JULY)}, format="json")
    assert appended.status_code == 200
    assert predictions_resolve() == 5
    assert predictions_resolve() == 0  # nothing twice

    # Every label equals what training would have computed on the full history.
    truth = compute_labels(load_builtin("sp500"), horizon=5, breakout_window=20)
    for p in Prediction.objects.all():
        expected = truth.loc[p.as_of.date()]
        assert p.labels == {t: int(expected[t]) for t in ("signal", "risk", "pattern")}
        assert p.correct["signal"] == ((p.outputs["signal"] > 0.5) == bool(expected["signal"]))

    live = api(analyst).get(f"{MODEL}/metrics", {"window": "24h"}).data
    signal = live["live"]["tasks"]["signalAccuracy"]
    hits = sum(p.correct["signal"] for p in Prediction.objects.all())
    assert signal["count"] == len(days) and signal["correct"] == hits
    assert signal["accuracy"] == round(hits / len(days), 6)
    assert signal["ci95"][0] <= signal["accuracy"] <= signal["ci95"][1]
    assert live["live"]["byVersion"]["v1.0.0"]["resolved"] == len(days)
    assert live["live"]["requests"] == len(days)
    assert (
        0
        < live["live"]["responseTime"]["p50"]
        <= live["live"]["responseTime"]["p95"]
        <= live["live"]["responseTime"]["p99"]
    )
    assert live["live"]["requestsPerMinute"] > 0
    # Validation metrics beside the live ones.
    assert live["performanceMetrics"]["signalAccuracy"] is not None and live["accuracy"] is not None


def test_metrics_window_is_validated(api, analyst):
    assert api(analyst).get(f"{MODEL}/metrics", {"window": "forever"}).status_code == 400
    assert api(analyst).get(f"{MODEL}/metrics", {"window": "400d"}).status_code == 400
