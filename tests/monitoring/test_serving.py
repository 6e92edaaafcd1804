"""Serving: no torch in the web path, one session per version, activation swap under load."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from django.db import close_old_connections, connection

from models_mgmt.models import Prediction
from models_mgmt.monitoring import serving

from .conftest import train

ROOT = Path(__file__).resolve().parents[2]
MODEL = "/api/model-management/models/live-model"


def test_serving_and_a_predict_call_never_import_torch(live_model):
    version = live_model.versions.get()
    script = f"""
import json, sys
import django
django.setup()
import models_mgmt.api.urls, techanal.urls  # the whole web stack
from models_mgmt.monitoring import serving
from models_mgmt.engine.bars import load_builtin
served = serving.session_for(1, "v1.0.0", "x", {version.artifact_path!r})
row = serving.feature_row(load_builtin("sp500").iloc[:400])
out = served.run(row[None, :])
print(json.dumps({{"torch": "torch" in sys.modules, "outputs": out.tolist()}}))
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False
    assert len(result["outputs"][0]) == 3


def test_a_predict_request_in_a_fresh_web_process_never_imports_pandas_or_scipy(api, analyst, live_model):
    """Both modes (bars, dataset + asOf) through the whole web stack, in a fresh interpreter that
    reads this test's database: the web process never loads pandas or scipy to predict."""
    from rest_framework_simplejwt.tokens import RefreshToken

    from .conftest import bar_dicts

    database = {k: connection.settings_dict[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    bars = bar_dicts(dt.date(2007, 1, 1), dt.date(2008, 3, 31))[-300:]
    script = f"""
import json, os, sys
import tests.settings
tests.settings.DATABASES["default"].update(json.loads(os.environ["TEST_DATABASE"]))
import techanal.asgi  # the whole web stack: django.setup() and the ASGI application
from rest_framework.test import APIClient
client = APIClient(SERVER_NAME="localhost", HTTP_AUTHORIZATION="Bearer " + os.environ["TOKEN"])
answers = [
    client.post("{MODEL}/predict", body, format="json").status_code
    for body in ({{"bars": json.loads(os.environ["BARS"])}}, {{"dataset": "live-sp500", "asOf": "2008-03-31"}})
]
print(json.dumps({{"answers": answers, "loaded": [m for m in ("pandas", "scipy") if m in sys.modules]}}))
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE": json.dumps(database),
        "TOKEN": str(RefreshToken.for_user(analyst).access_token),
        "BARS": json.dumps(bars),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"answers": [200, 200], "loaded": []}
    assert Prediction.objects.count() == 2


def test_one_session_per_version_keyed_by_checksum(live_model):
    version = live_model.versions.get()
    first = serving.session_for(live_model.pk, version.version, version.checksum, version.artifact_path)
    assert serving.session_for(live_model.pk, version.version, version.checksum, version.artifact_path) is first
    other = serving.session_for(live_model.pk, version.version, "another-checksum", version.artifact_path)
    assert other is not first and len(serving.cached_keys()) == 2


def test_activation_swaps_the_served_version_under_concurrent_requests(api, live_model, analyst):
    """Predict requests run in threads while versions are activated back and forth: no error, and
    every response (and its ledger row) names a version that was active during the request."""
    second = train(api, live_model, {"epochs": 2, "startDate": "2004-01-01", "hyperparameters": {"seed": 7}})
    owner = api(live_model.owner)
    outcomes: list[tuple[int, str | None, int | None]] = []
    stop = threading.Event()

    def client() -> None:
        session = api(analyst)
        try:
            while not stop.is_set():
                r = session.post(f"{MODEL}/predict", {"dataset": "live-sp500", "asOf": "2008-06-27"}, format="json")
                outcomes.append((r.status_code, r.data.get("version"), r.data.get("predictionId")))
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for target in [second, "v1.0.0", second, "v1.0.0", second]:
        assert owner.post(f"{MODEL}/versions/{target}/activate").status_code == 200
        deadline = len(outcomes) + 8
        while len(outcomes) < deadline and all(t.is_alive() for t in threads):
            threading.Event().wait(0.01)
    stop.set()
    for t in threads:
        t.join(timeout=60)

    assert outcomes and all(code == 200 for code, _, _ in outcomes), [o for o in outcomes if o[0] != 200][:3]
    versions = {v for _, v, _ in outcomes}
    assert versions == {"v1.0.0", second}
    ledger = dict(Prediction.objects.values_list("pk", "version__version"))
    assert all(ledger[pid] == version for _, version, pid in outcomes)
    # After the last activation every new request is served by it.
    final = api(analyst).post(f"{MODEL}/predict", {"dataset": "live-sp500", "asOf": "2008-06-27"}, format="json")
    assert final.data["version"] == second
    # The deactivated version's session was dropped: memory holds the active one per model.
    assert [k[1] for k in serving.cached_keys()] == [second]
