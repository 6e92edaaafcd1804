"""Comparison re-evaluates every chosen version on one held-out window."""

from __future__ import annotations

import pytest

from .conftest import train

MODEL = "/api/model-management/models/live-model"


def test_versions_are_scored_on_the_same_unseen_window(api, analyst, live_model):
    second = train(api, live_model, {"epochs": 2, "startDate": "2005-01-01", "hyperparameters": {"seed": 3}})
    response = api(analyst).get(f"{MODEL}/comparison", {"versions": f"v1.0.0,{second}"})
    assert response.status_code == 200, response.data
    held = response.data["heldOut"]
    assert held["status"] == "computed" and held["reference"] == "v1.0.0"  # the active one
    first, other = held["results"]["v1.0.0"], held["results"][second]
    assert (first["start"], first["end"], first["samples"]) == (other["start"], other["end"], other["samples"])
    assert first["samples"] >= 30
    for version in live_model.versions.all():
        assert held["window"]["start"] > version.metadata["trainWindow"][1]  # unseen by both
        assert held["results"][version.version]["seenInTraining"] is False
    for key, value in other["performanceMetrics"].items():
        assert held["deltas"][second][key] == pytest.approx(value - first["performanceMetrics"][key], abs=1e-6)
        assert held["deltas"]["v1.0.0"][key] == 0
    assert {"cumulativeReturn", "sharpe", "buyHoldReturn"} <= set(first["backtest"])
    # The stored validation figures stay beside them.
    assert {row["metric"] for row in response.data["metrics"]} >= {"accuracy", "backtestSharpe"}


def test_an_explicit_window_is_used_and_flags_what_training_saw(api, analyst, live_model):
    response = api(analyst).get(
        f"{MODEL}/comparison", {"versions": "v1.0.0", "start": "2005-01-01", "end": "2005-12-31"}
    )
    held = response.data["heldOut"]
    assert held["window"]["start"] >= "2005-01-01" and held["window"]["end"] <= "2005-12-31"
    assert held["results"]["v1.0.0"]["seenInTraining"] is True
    assert api(analyst).get(f"{MODEL}/comparison", {"start": "2005-13-01"}).status_code == 400
