"""Migration 0009: daily bars keyed by date become timestamps at 00:00 UTC, and back; an intraday
dataset refuses the way back instead of losing bars. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("models_mgmt", "0008_job_enqueued_at")]
AFTER = [("models_mgmt", "0009_intraday_bars")]
DAYS = [dt.date(2021, 3, 1), dt.date(2021, 3, 2), dt.date(2021, 3, 3)]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0008(transactional_db):
    apps = migrate(BEFORE)
    yield apps
    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())


def seed_daily(apps):
    User = apps.get_model("auth", "User")
    Dataset = apps.get_model("models_mgmt", "Dataset")
    Bar = apps.get_model("models_mgmt", "Bar")
    AIModel = apps.get_model("models_mgmt", "AIModel")
    ModelVersion = apps.get_model("models_mgmt", "ModelVersion")
    Prediction = apps.get_model("models_mgmt", "Prediction")
    owner = User.objects.create(username="migrator")
    dataset = Dataset.objects.create(
        name="old-daily", symbol="X", timeframe="1d", source="upload", bar_count=3,
        first_date=DAYS[0], last_date=DAYS[2],
    )  # fmt: skip
    Bar.objects.bulk_create(
        Bar(dataset=dataset, date=day, open=10 + i, high=11 + i, low=9 + i, close=10.5 + i, volume=100)
        for i, day in enumerate(DAYS)
    )
    model = AIModel.objects.create(name="old-model", family="multitask-mlp", owner=owner)
    version = ModelVersion.objects.create(model=model, version="v1.0.0", status="ready")
    Prediction.objects.create(
        model=model, version=version, dataset=dataset, source="dataset", as_of=DAYS[0], horizon=1,
        breakout_window=20, due_on=DAYS[1], horizon_end=DAYS[1], features=[], outputs={"signal": 0.6},
        latency_ms=1.0,
    )  # fmt: skip


def test_daily_bars_become_midnight_utc_timestamps_and_back(at_0008):
    seed_daily(at_0008)

    after = migrate(AFTER)
    midnight = [dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) for day in DAYS]
    Bar = after.get_model("models_mgmt", "Bar")
    assert list(Bar.objects.order_by("timestamp").values_list("timestamp", flat=True)) == midnight
    assert Bar.objects.filter(timestamp=midnight[1]).count() == 1  # equality works on the stored format
    dataset = after.get_model("models_mgmt", "Dataset").objects.get(name="old-daily")
    assert (dataset.first_bar_at, dataset.last_bar_at) == (midnight[0], midnight[2])
    prediction = after.get_model("models_mgmt", "Prediction").objects.get()
    assert (prediction.as_of, prediction.due_on, prediction.horizon_end) == (midnight[0], midnight[1], midnight[1])
    assert prediction.due_on <= dataset.last_bar_at

    before = migrate(BEFORE)
    Bar = before.get_model("models_mgmt", "Bar")
    assert list(Bar.objects.order_by("date").values_list("date", flat=True)) == DAYS
    dataset = before.get_model("models_mgmt", "Dataset").objects.get(name="old-daily")
    assert (dataset.first_date, dataset.last_date) == (DAYS[0], DAYS[2])
    prediction = before.get_model("models_mgmt", "Prediction").objects.get()
    assert (prediction.as_of, prediction.due_on, prediction.horizon_end) == (DAYS[0], DAYS[1], DAYS[1])


def test_reversing_refuses_while_intraday_bars_exist(at_0008):
    after = migrate(AFTER)
    Dataset = after.get_model("models_mgmt", "Dataset")
    Bar = after.get_model("models_mgmt", "Bar")
    hourly = Dataset.objects.create(name="hourly", symbol="X", timeframe="1h", source="upload", bar_count=2)
    for hour in (14, 15):
        stamp = dt.datetime(2021, 3, 1, hour, 30, tzinfo=dt.UTC)
        Bar.objects.create(dataset=hourly, timestamp=stamp, open=10, high=11, low=9, close=10, volume=1)

    with pytest.raises(RuntimeError, match="hourly"):
        migrate(BEFORE)

    Bar = migrate(AFTER).get_model("models_mgmt", "Bar")
    assert Bar.objects.filter(dataset__name="hourly").count() == 2  # nothing was lost
    Dataset.objects.filter(name="hourly").delete()
