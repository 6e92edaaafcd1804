"""No N+1: the number of queries a read makes does not grow with the number of rows it returns;
and each write makes a small, fixed number of queries whatever the registry holds.

Each read is measured with CaptureQueriesContext at N rows and again at 3N rows (after one
warm-up request, so per-process caches such as content types do not count); the counts must be
equal. The rows carry every relation the serializers follow (owner, dataset, parent version,
active version, live job, base version, actor, ...), so a missing select_related/prefetch shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from models_mgmt.choices import JobStatus, Role, VersionStatus
from models_mgmt.models import AIModel, AuditEvent, Prediction, TrainingJob
from tests.factories import (
    AIModelFactory,
    DatasetFactory,
    ModelVersionFactory,
    TrainingJobFactory,
    UserFactory,
    grant,
)

BASE = "/api/model-management"
N = 4


@pytest.fixture
def maintainer(db):
    return UserFactory(role=Role.MAINTAINER)


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(ctx.captured_queries)


def assert_constant(client, url: str, add_rows: Callable[[int], None]) -> None:
    add_rows(N)
    queries(client, url)  # warm-up: per-process caches
    few = queries(client, url)
    add_rows(2 * N)
    many = queries(client, url)
    assert many == few, f"{url}: {few} queries at {N} rows, {many} at {3 * N}"


def visible_model(user, name: str) -> AIModel:
    model = AIModelFactory(name=name, owner=user)
    grant(user, model, Role.MAINTAINER)
    return model


def versions_of(model: AIModel, count: int) -> None:
    """`count` more versions, each the child of the previous, with a dataset and full metrics."""
    previous = model.versions.order_by("-id").first()
    start = model.versions.count()
    for i in range(start, start + count):
        previous = ModelVersionFactory(
            model=model,
            version=f"v1.{i}.0",
            parent=previous,
            dataset=model.default_dataset,
            backtest={"sharpe": 0.1 * i, "cumulativeReturn": 0.01 * i, "maxDrawdown": -0.05},
            metadata={"loss": 0.6 - 0.001 * i, "epochs": 10},
        )


def test_model_list(api, maintainer):
    seq = iter(range(10_000))

    def add(count: int) -> None:
        for _ in range(count):
            model = visible_model(maintainer, f"m{next(seq)}")
            ModelVersionFactory(model=model, version="v1.0.0", status=VersionStatus.ACTIVE)
            TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.RUNNING)
            TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.SUCCEEDED)

    assert_constant(api(maintainer), f"{BASE}/models", add)


def test_version_list(api, maintainer):
    model = visible_model(maintainer, "llama3.1:8b")
    assert_constant(api(maintainer), f"{BASE}/models/{model.name}/versions", lambda n: versions_of(model, n))


def test_comparison(api, maintainer):
    model = visible_model(maintainer, "llama3.1:8b")
    assert_constant(api(maintainer), f"{BASE}/models/{model.name}/comparison", lambda n: versions_of(model, n))


def test_metrics(api, maintainer):
    model = visible_model(maintainer, "llama3.1:8b")
    active = ModelVersionFactory(model=model, version="v0.9.0", status=VersionStatus.ACTIVE)

    def add(count: int) -> None:
        versions_of(model, count)
        now = timezone.now()
        Prediction.objects.bulk_create(
            Prediction(
                model=model,
                version=active if i % 2 else model.versions.order_by("-id").first(),
                dataset=model.default_dataset,
                source="bars",
                as_of=dt.datetime(2020, 6, 1, tzinfo=dt.UTC),
                horizon=5,
                breakout_window=20,
                due_on=dt.datetime(2020, 6, 8, tzinfo=dt.UTC),
                features={},
                outputs={"signal": 0.6},
                latency_ms=1.0 + i,
                resolved_at=now if i % 3 else None,
                labels={"signal": 1},
                correct={"signal": bool(i % 2)},
            )
            for i in range(count)
        )

    assert_constant(api(maintainer), f"{BASE}/models/{model.name}/metrics?window=24h", add)


def test_job_list(api, maintainer):
    seq = iter(range(10_000))

    def add(count: int) -> None:
        for _ in range(count):
            model = visible_model(maintainer, f"m{next(seq)}")
            base = ModelVersionFactory(model=model, version="v1.0.0")
            made = ModelVersionFactory(model=model, version="v1.1.0", parent=base, dataset=model.default_dataset)
            TrainingJobFactory(
                model=model,
                dataset=model.default_dataset,
                base_version=base,
                version=made,
                created_by=maintainer,
                status=JobStatus.SUCCEEDED,
            )
            TrainingJobFactory(model=model, dataset=model.default_dataset, created_by=maintainer)

    assert_constant(api(maintainer), f"{BASE}/jobs", add)


def test_audit_events(api, maintainer):
    seq = iter(range(10_000))

    def add(count: int) -> None:
        for _ in range(count):
            i = next(seq)
            model = visible_model(maintainer, f"m{i}")
            for action in ("model.create", "version.activate"):
                AuditEvent.objects.create(
                    actor=UserFactory(),
                    action=action,
                    object_type="aimodel",
                    object_id=str(model.pk),
                    object_repr=model.name,
                    ai_model=model,
                    ai_model_name=model.name,
                    before=None,
                    after={"i": i},
                )

    assert_constant(api(maintainer), f"{BASE}/audit-events", add)


def test_datasets(api, maintainer):
    seq = iter(range(10_000))

    def add(count: int) -> None:
        for _ in range(count):
            dataset = DatasetFactory(name=f"ds-{next(seq)}", bars=3)
            dataset.created_by = UserFactory()
            dataset.save(update_fields=["created_by"])

    assert_constant(api(maintainer), f"{BASE}/datasets", add)


# --- Writes: exact counts (inside the test's transaction, so SAVEPOINT/RELEASE count too) -------
# The JWT user (1); the model row (1); its object permissions, once per request whatever the
# number of checks (2); then the change itself. No second permission-filtered read for the answer.
WRITE_QUERIES = {
    # + dataset, base version, SAVEPOINT x2, INSERT job, RELEASE, seq UPDATE + SELECT, event INSERT,
    #   audit INSERT, RELEASE
    "fine-tune": 15,
    # + SAVEPOINT, job row locked with its relations, job UPDATE, seq UPDATE + SELECT, previous event,
    #   event INSERT, audit INSERT, RELEASE
    "stop": 13,
    # + SAVEPOINT, model row lock, target version lock (with what the answer shows), previous active
    #   lock, 2 UPDATEs, audit INSERT, the running shadow experiment whose champion this replaces
    #   (locked; none here), seq UPDATE + SELECT, event INSERT, RELEASE
    "activate": 16,
    # GET models/:name for comparison: user, model, permissions (2), active version and live job (2)
    "detail": 6,
}


@pytest.fixture
def crowded_registry(maintainer):
    """Other models, versions and jobs the user may see: a write must not scale with them."""

    def add(count: int) -> None:
        for _ in range(count):
            other = visible_model(maintainer, f"other-{AIModel.objects.count()}")
            versions_of(other, 3)
            TrainingJobFactory(model=other, dataset=other.default_dataset, status=JobStatus.SUCCEEDED)

    return add


def count_writes(client, name: str) -> dict[str, int]:
    url = f"{BASE}/models/{name}"

    def measured(method, path, expect: int, **kw) -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = method(path, **kw)
        assert response.status_code == expect, response.content[:500]
        return len(ctx.captured_queries)

    return {
        "fine-tune": measured(client.post, f"{url}/fine-tune", 202, data={"epochs": 5}, format="json"),
        "stop": measured(client.post, f"{url}/fine-tune/stop", 200),
        "activate": measured(client.post, f"{url}/versions/v1.0.0/activate", 200),
        "detail": measured(client.get, url, 200),
    }


@pytest.mark.parametrize("through", ["user", "group"])
def test_writes_make_a_fixed_small_number_of_queries(api, maintainer, crowded_registry, through):
    from django.contrib.auth.models import Group

    from tests.factories import grant

    if through == "group":  # the bench's shape: permissions held by a team the user is in
        team = Group.objects.create(name="team")
        maintainer.groups.add(team)
    model = AIModelFactory(name="llama3.1:8b", owner=maintainer)
    grant(team if through == "group" else maintainer, model, Role.MAINTAINER)
    versions_of(model, 2)
    model.versions.filter(version="v1.1.0").update(status=VersionStatus.ACTIVE)
    client = api(maintainer)
    client.get(f"{BASE}/models/{model.name}")  # warm-up: per-process caches (content types)

    crowded_registry(N)
    few = count_writes(client, model.name)
    TrainingJob.objects.filter(model=model).delete()
    model.versions.update(status=VersionStatus.DEPRECATED)
    model.versions.filter(version="v1.1.0").update(status=VersionStatus.ACTIVE)
    crowded_registry(2 * N)
    many = count_writes(client, model.name)
    assert few == many == WRITE_QUERIES, f"{few} at {N} other models, {many} at {3 * N}"
