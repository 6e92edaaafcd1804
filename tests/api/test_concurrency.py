"""Database constraints under real concurrency: threads with their own connections, released together.

Run on PostgreSQL in CI (DATABASE_URL=postgres://...) and on SQLite; on both, the database decides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connections

from models_mgmt.choices import JobStatus, Role, VersionStatus
from models_mgmt.models import ModelVersion, TrainingJob
from tests.factories import AIModelFactory, ModelVersionFactory, UserFactory, grant

pytestmark = pytest.mark.django_db(transaction=True)
BASE = "/api/model-management/models/race"


def run_together(calls: list[Callable[[], int]]) -> list[int]:
    """Start every call at the same instant on its own thread and connection; return status codes."""
    barrier = threading.Barrier(len(calls))
    results: list[int | BaseException] = [0] * len(calls)

    def worker(index: int, call: Callable[[], int]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except BaseException as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


@pytest.fixture
def race_model():
    model = AIModelFactory(name="race")
    grant(model.owner, model, Role.MAINTAINER)
    return model


@pytest.mark.parametrize("attempt", range(3))
def test_simultaneous_activations_leave_exactly_one_active(api, race_model, attempt):
    ModelVersionFactory(model=race_model, version="v1.0.0", status=VersionStatus.ACTIVE)
    names = [f"v1.{i}.0" for i in range(1, 5)]
    for name in names:
        ModelVersionFactory(model=race_model, version=name, status=VersionStatus.READY)
    users = []
    for _ in names:
        user = UserFactory(role=Role.MAINTAINER)
        grant(user, race_model, Role.MAINTAINER)
        users.append(user)
    clients = [api(u) for u in users]
    codes = run_together(
        [
            lambda c=c, n=n: c.post(f"{BASE}/versions/{n}/activate").status_code
            for c, n in zip(clients, names, strict=True)
        ]
    )
    assert codes == [200] * len(names)
    statuses = list(ModelVersion.objects.filter(model=race_model).values_list("status", flat=True))
    assert statuses.count(VersionStatus.ACTIVE) == 1
    assert statuses.count(VersionStatus.DEPRECATED) == len(names)


@pytest.mark.parametrize("attempt", range(3))
def test_simultaneous_starts_give_one_job_and_409s(api, race_model, attempt):
    users = []
    for _ in range(4):
        user = UserFactory(role=Role.TRAINER)
        grant(user, race_model, Role.TRAINER)
        users.append(user)
    clients = [api(u) for u in users]
    codes = run_together(
        [lambda c=c: c.post(f"{BASE}/fine-tune", {"epochs": 2}, format="json").status_code for c in clients]
    )
    assert sorted(codes) == [202, 409, 409, 409]
    assert TrainingJob.objects.filter(model=race_model).count() == 1
    assert TrainingJob.objects.get(model=race_model).status == JobStatus.QUEUED


def test_simultaneous_stop_and_start_never_leave_two_live_jobs(api, race_model):
    TrainingJob.objects.create(model=race_model, dataset=race_model.default_dataset, status=JobStatus.QUEUED)
    owner = api(race_model.owner)
    trainer = UserFactory(role=Role.TRAINER)
    grant(trainer, race_model, Role.TRAINER)
    starter = api(trainer)
    codes = run_together(
        [
            lambda: owner.post(f"{BASE}/fine-tune/stop").status_code,
            lambda: starter.post(f"{BASE}/fine-tune", {"epochs": 2}, format="json").status_code,
        ]
    )
    assert codes[0] == 200
    assert codes[1] in (202, 409)
    live = TrainingJob.objects.filter(
        model=race_model, status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING]
    )
    assert live.count() == (1 if codes[1] == 202 else 0)


def test_a_start_refused_by_a_job_that_ends_before_the_conflict_is_read_tries_again(api, race_model, monkeypatch):
    """The INSERT meets a live job (the partial unique index refuses it), and that job finishes before
    the conflict is read (a worker is fast): nothing holds the model any more, so the start goes
    through instead of answering 500 (seen under load in tests/faults/test_many_jobs.py)."""
    from django.db import IntegrityError

    create = TrainingJob.objects.create
    calls = []

    def refused_once(**fields):
        calls.append(fields)
        if len(calls) == 1:
            raise IntegrityError('duplicate key value violates unique constraint "one_live_job_per_model"')
        return create(**fields)

    monkeypatch.setattr(TrainingJob.objects, "create", refused_once)
    response = api(race_model.owner).post(f"{BASE}/fine-tune", {"epochs": 1}, format="json")

    assert response.status_code == 202, response.data
    assert len(calls) == 2
    assert TrainingJob.objects.filter(model=race_model, status=JobStatus.QUEUED).count() == 1
