"""Drift through the API and the scheduled check: verdict, reasons, history, alerts, webhook."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from models_mgmt.choices import Role
from models_mgmt.models import Alert, DriftReport, ProgressEvent
from models_mgmt.monitoring.alerts import monitoring_check, monitoring_checks_run
from models_mgmt.monitoring.drift import drift_reports_warm
from tests.factories import UserFactory

from .conftest import bar_dicts

MODEL = "/api/model-management/models/live-model"


def append_crisis(api) -> None:
    response = api(UserFactory(role=Role.MAINTAINER)).post(
        "/api/model-management/datasets/live-sp500/bars",
        {"bars": bar_dicts(dt.date(2008, 7, 1), dt.date(2008, 12, 31))},
        format="json",
    )
    assert response.status_code == 200, response.data


def test_drift_report_names_a_crisis_window_with_reasons(api, analyst, live_model):
    append_crisis(api)
    response = api(analyst).get(f"{MODEL}/drift", {"start": "2008-09-01", "end": "2008-12-31"})
    assert response.status_code == 200, response.data
    report = response.data
    assert report["status"] == "computed" and report["verdict"] == "drift"
    assert report["recommendation"] == "retrain"
    assert report["reference"]["dataset"] == "live-sp500" and report["reference"]["start"] >= "2004-01-01"
    assert report["window"]["start"] >= "2008-09-01" and report["window"]["end"] <= "2008-12-31"
    features = {f["name"]: f for f in report["features"]}
    assert set(features) >= {"vol_5", "vol_20", "ret_1"}
    for column in features.values():
        assert {"psi", "ks", "wasserstein", "level"} <= set(column)
    assert features["vol_5"]["level"] == "drift" and features["vol_5"]["psi"] > 0.25
    assert any("vol_5" in reason for reason in report["reasons"])
    assert report["predictionDrift"]["verdict"] in ("stable", "warning", "drift")
    assert report["performanceDrift"]["status"] == "insufficient_data"  # no live predictions yet
    assert report["driftScore"] >= report["thresholds"]["featureShare"]


def test_a_window_like_the_training_data_does_not_drift(api, analyst):
    # A calm stretch inside the training years.
    response = api(analyst).get(f"{MODEL}/drift", {"start": "2005-01-01", "end": "2005-06-30"})
    assert response.data["verdict"] in ("stable", "warning")
    assert response.data["recommendation"] in ("none", "monitor")


def test_no_feature_is_called_stable_above_the_alert_level(api, analyst):
    """Regression: features at PSI 1.2-2.1 were reported `stable` and the summary said "0 warn"."""
    for window in (("2005-01-01", "2005-06-30"), ("2008-01-01", "2008-06-30")):
        report = api(analyst).get(f"{MODEL}/drift", {"start": window[0], "end": window[1]}).data
        alert = report["thresholds"]["psiAlert"]
        for column in report["features"]:
            if column["psi"] >= alert:
                assert column["level"] in ("shifted", "drift"), column
                assert column["detail"] and column["ks"]["effectiveN"] > 0
        shifted = report["dataDrift"]["shifted"]
        assert f"{len(shifted)} shifted" in report["reasons"][0]


def test_the_stored_check_names_the_version_it_was_for(api, analyst, live_model):
    monitoring_check(model=live_model)
    drift = api(analyst).get(f"{MODEL}/metrics").data["drift"]
    assert drift["status"] == "computed" and drift["version"] == "v1.0.0"


def test_thresholds_are_configurable(api, analyst, settings):
    append_crisis(api)
    settings.MONITORING_PSI_ALERT = 1000.0  # nothing can drift that much
    settings.MONITORING_PSI_WARN = 1000.0
    response = api(analyst).get(f"{MODEL}/drift", {"start": "2008-09-01", "end": "2008-12-31"})
    assert response.data["verdict"] == "stable" and response.data["thresholds"]["psiAlert"] == 1000.0


def test_drift_detection_disabled(api, analyst, settings):
    settings.MODEL_DRIFT_DETECTION_ENABLED = False
    response = api(analyst).get(f"{MODEL}/drift")
    assert response.status_code == 503 and response.data["code"] == "drift_detection_disabled"
    assert monitoring_checks_run() == []


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    settings.ALERT_WEBHOOK_SECRET = "s3cret"
    yield Receiver.received
    server.shutdown()
    server.server_close()


def test_alerts_open_with_hysteresis_are_pushed_signed_and_clear(api, analyst, live_model, settings, webhook):
    settings.MONITORING_ALERT_RAISE_AFTER = 2
    settings.MONITORING_ALERT_CLEAR_AFTER = 2
    calm = monitoring_check(model=live_model)  # the window before the crisis: Jan-Jun 2008
    assert not calm.conditions["data_drift"] or calm.verdict == "drift"
    append_crisis(api)
    first = monitoring_check(model=live_model)
    assert first.verdict == "drift" and first.conditions["data_drift"]
    had_alert = Alert.objects.filter(kind="data_drift").exists()
    # One bad report is not enough unless the report before it was bad too.
    assert had_alert == bool(calm.conditions["data_drift"])
    monitoring_check(model=live_model)
    alert = Alert.objects.get(kind="data_drift")
    assert alert.status == "open" and alert.recommendation == "retrain" and alert.reasons
    assert Alert.objects.filter(kind="data_drift").count() == 1  # a third bad report opens no second alert
    monitoring_check(model=live_model)
    assert Alert.objects.filter(kind="data_drift").count() == 1

    event = ProgressEvent.objects.filter(type="alert", model=live_model).first()
    assert event.payload["kind"] == "data_drift" and event.payload["state"] == "open"

    headers, body = next((h, b) for h, b in webhook if json.loads(b)["kind"] == "data_drift")
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-techanal-signature"] == expected
    assert json.loads(body)["alertId"] == alert.pk
    alert.refresh_from_db()
    assert alert.webhook_status == "delivered: HTTP 204"

    listed = api(analyst).get(f"{MODEL}/alerts").data["results"]
    assert [a["id"] for a in listed if a["kind"] == "data_drift"] == [alert.pk]
    assert api(analyst).post(f"{MODEL}/alerts/{alert.pk}/acknowledge").status_code == 403
    ack = api(live_model.owner).post(f"{MODEL}/alerts/{alert.pk}/acknowledge")
    assert ack.status_code == 200 and ack.data["status"] == "acknowledged"

    # The condition clears only after CLEAR_AFTER good reports.
    settings.MONITORING_PSI_ALERT = settings.MONITORING_PSI_WARN = 1000.0
    monitoring_check(model=live_model)
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    monitoring_check(model=live_model)
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolved_at is not None
    assert ProgressEvent.objects.filter(type="alert", payload__state="resolved").exists()

    history = api(analyst).get(f"{MODEL}/drift").data["history"]
    assert len(history) == DriftReport.objects.count() == 6
    assert api(analyst).get(f"{MODEL}/metrics").data["drift"]["status"] == "computed"


def test_performance_drift_and_rollback_recommendation(api, analyst, live_model, settings):
    """Live accuracy far below validation is a significant drop; a better older version is offered."""
    from models_mgmt.models import Prediction
    from models_mgmt.monitoring.predictions import predictions_resolve

    for day in ("2008-05-01", "2008-05-02"):
        api(analyst).post(f"{MODEL}/predict", {"dataset": "live-sp500", "asOf": day}, format="json")
    append_crisis(api)
    predictions_resolve()
    template = Prediction.objects.first()
    wrong = {t: False for t in ("signal", "risk", "pattern")}
    fields = {f.attname: getattr(template, f.attname) for f in Prediction._meta.concrete_fields if f.name != "id"}
    Prediction.objects.bulk_create([Prediction(**{**fields, "correct": wrong}) for _ in range(60)])
    report = api(analyst).get(f"{MODEL}/drift").data
    performance = report["performanceDrift"]
    assert performance["status"] == "degraded"
    assert performance["tasks"]["signalAccuracy"]["significant"]
    assert report["verdict"] == "drift"
    assert report["recommendation"] in ("retrain",) or report["recommendation"].startswith("rollback to ")
    assert any("performance drift" in r for r in report["reasons"])


def test_a_drift_report_is_cached_per_version_and_bars_and_recomputed_after_new_bars(api, analyst, live_model):
    """Issue 11.11: the first GET drift after start took 1.9 s; the expensive sections (features,
    ONNX outputs, statistics) are cached by version, window and the dataset's bars."""
    first = api(analyst).get(f"{MODEL}/drift").data
    again = api(analyst).get(f"{MODEL}/drift").data
    assert (first["cache"], again["cache"]) == ("miss", "hit")
    assert again["features"] == first["features"] and again["window"] == first["window"]
    append_crisis(api)  # new bars: another window, another key
    after = api(analyst).get(f"{MODEL}/drift").data
    assert after["cache"] == "miss" and after["window"]["end"] > first["window"]["end"]


def test_a_worker_warms_the_report_that_the_web_then_serves(api, analyst, live_model):
    assert drift_reports_warm(model_id=live_model.pk) == [live_model.name]
    assert api(analyst).get(f"{MODEL}/drift").data["cache"] == "hit"
    assert drift_reports_warm(dataset_id=live_model.default_dataset_id + 1000) == []
