"""Predict makes a constant, small number of queries, whatever the number of models and versions:
the bearer token's user; the active version with its model and dataset (one query); the user's
object permissions on the model (2, the request's one checker); with a dataset in the body,
the user's role-wide permissions (2, read once a request) and the dataset; a dataset window's bars
(one query); the ledger INSERT. No guardian check after the lookup."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from models_mgmt.choices import Role, VersionStatus
from models_mgmt.models import Prediction
from tests.factories import AIModelFactory, ModelVersionFactory, grant

from .conftest import LIVE_CUTOFF, bar_dicts

URL = "/api/model-management/models/live-model/predict"
BARS = {"bars": bar_dicts(LIVE_CUTOFF - dt.timedelta(days=800), LIVE_CUTOFF)[-300:]}
DATASET = {"dataset": "live-sp500", "asOf": "2008-03-31"}
BARS_RESOLVED_IN = {**BARS, "dataset": "live-sp500"}


def queries(client, body: dict) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(URL, body, format="json")
    assert response.status_code == 200, response.data
    return [q["sql"] for q in ctx.captured_queries]


def add_models(user, n: int) -> None:
    """Other models the user sees, each with versions (one active), and more versions of this one."""
    for _ in range(n):
        other = AIModelFactory(owner=user)
        grant(user, other, Role.VIEWER)
        ModelVersionFactory(model=other, status=VersionStatus.ACTIVE)
        ModelVersionFactory(model=other)


@pytest.mark.parametrize(("body", "expected"), [(BARS, 5), (DATASET, 9), (BARS_RESOLVED_IN, 8)])
def test_predict_makes_the_same_few_queries_at_1_and_3_models(api, analyst, live_model, body, expected):
    client = api(analyst)
    client.post(URL, body, format="json")  # warm-up: per-process caches (content types, sessions)
    few = queries(client, body)
    add_models(analyst, 2)
    for _ in range(2):
        ModelVersionFactory(model=live_model)
    many = queries(client, body)
    assert len(few) == len(many) == expected, "\n".join(many)
    assert sum(sql.startswith("INSERT") for sql in many) == 1
    assert Prediction.objects.count() == 3
