"""A real, small trained version on real S&P 500 bars, with later bars kept back to 'arrive' live."""

from __future__ import annotations

import datetime as dt

import pytest

from models_mgmt.choices import DatasetSource, Role
from models_mgmt.engine.bars import load_builtin
from models_mgmt.engine.timeframes import bar_timestamp
from models_mgmt.models import Bar, Dataset
from models_mgmt.monitoring import serving
from models_mgmt.training.worker import training_job_execute
from tests.factories import AIModelFactory, UserFactory, grant

LIVE_CUTOFF = dt.date(2008, 6, 30)  # the dataset holds bars up to here; later ones arrive through the API
TRAIN_FROM = "2004-01-01"


def bar_dicts(start: dt.date, end: dt.date) -> list[dict]:
    frame = load_builtin("sp500")
    part = frame[(frame.index >= start) & (frame.index <= end)]
    return [
        {"date": day.isoformat(), "open": r.open, "high": r.high, "low": r.low, "close": r.close, "volume": r.volume}
        for day, r in zip(part.index, part.itertuples(index=False), strict=True)
    ]


def make_dataset(name: str, end: dt.date) -> Dataset:
    frame = load_builtin("sp500")
    frame = frame[frame.index <= end]
    dataset = Dataset.objects.create(name=name, symbol="^GSPC", source=DatasetSource.UPLOAD)
    Bar.objects.bulk_create(
        Bar(
            dataset=dataset,
            timestamp=bar_timestamp(d),
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            volume=r.volume,
        )
        for d, r in zip(frame.index, frame.itertuples(index=False), strict=True)
    )
    dataset.bar_count = len(frame)
    dataset.first_bar_at, dataset.last_bar_at = bar_timestamp(frame.index[0]), bar_timestamp(frame.index[-1])
    dataset.save()
    return dataset


def train(api, model, body: dict) -> str:
    response = api(model.owner).post(f"/api/model-management/models/{model.name}/fine-tune", body, format="json")
    assert response.status_code == 202, response.data
    outcome = training_job_execute(job_id=response.data["id"])
    assert outcome.status == "succeeded"
    return outcome.version


@pytest.fixture(autouse=True)
def _fresh_serving_cache():
    serving.clear()
    yield
    serving.clear()


@pytest.fixture
def live_model(transactional_db, settings, tmp_path, api):
    """`live-model` v1.0.0 trained (2 epochs) on 2004..mid-2008 of `live-sp500` and activated."""
    settings.ARTIFACTS_DIR = tmp_path
    dataset = make_dataset("live-sp500", LIVE_CUTOFF)
    model = AIModelFactory(name="live-model", default_dataset=dataset)
    grant(model.owner, model, Role.MAINTAINER)
    version = train(api, model, {"epochs": 2, "startDate": TRAIN_FROM})
    response = api(model.owner).post(f"/api/model-management/models/{model.name}/versions/{version}/activate")
    assert response.status_code == 200
    return model


@pytest.fixture
def analyst(live_model):
    user = UserFactory(role=Role.VIEWER)
    grant(user, live_model, Role.VIEWER)
    return user
