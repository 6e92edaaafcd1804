"""Several worker hosts: the reaper trusts pids only on its own WORKER_HOST and judges another
host's job by its heartbeat lease; work is routed to django-q2 clusters by name; the product's
schedules follow MONITORING_CLUSTER after every migrate; a queued job whose task a lost host had
pulled from Redis is sent again after the lease (Redis database 15, no other test uses it).
(tests/faults/test_worker_hosts.py runs real hosts over Redis.)"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta

import pytest
import redis
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from models_mgmt.choices import JobStatus, Role
from models_mgmt.models import ProgressEvent, TrainingJob
from models_mgmt.services import queue
from models_mgmt.services.datasets import _enqueue_resolution
from models_mgmt.services.queue import RUN_TRAINING, task_enqueue, training_jobs_waiting
from models_mgmt.services.training_jobs import training_job_claim, training_job_enqueue
from models_mgmt.services.versions import _enqueue_drift_warmup
from models_mgmt.training.reaper import training_jobs_reap
from models_mgmt.training.worker import training_job_execute
from tests.factories import AIModelFactory, TrainingJobFactory, UserFactory
from tests.live import dead_pid, django_in_a_process

REDIS_URL = "redis://127.0.0.1:6379/15"  # no other test uses this database


@pytest.fixture
def on_host_a(db, settings):
    settings.WORKER_HOST = "host-a"
    settings.TRAINING_HEARTBEAT_TIMEOUT_S = 60
    settings.TRAINING_MAX_ATTEMPTS = 3


def running(worker: str, heartbeat_age_s: float = 0) -> TrainingJob:
    model = AIModelFactory()
    return TrainingJobFactory(
        model=model,
        dataset=model.default_dataset,
        status=JobStatus.RUNNING,
        attempts=1,
        worker=worker,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age_s),
    )


def test_another_hosts_job_is_left_alone_while_its_heartbeat_is_fresh_and_requeued_once_stale(on_host_a):
    # Pids of host-b mean nothing on host-a: neither a live one here nor a dead one decides.
    live_pid_elsewhere = running(f"host-b:{os.getpid()}")
    dead_pid_elsewhere = running(f"host-b:{dead_pid()}")
    assert training_jobs_reap() == []

    TrainingJob.objects.filter(pk=live_pid_elsewhere.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    assert training_jobs_reap() == [(live_pid_elsewhere.pk, "requeued")]
    job = TrainingJob.objects.get(pk=live_pid_elsewhere.pk)
    assert (job.status, job.worker, job.attempts) == (JobStatus.QUEUED, "", 1)  # the next claim counts attempt 2
    assert "host-b" in job.error
    assert training_jobs_reap() == []  # requeued once: a queued job is no longer the reaper's
    assert TrainingJob.objects.get(pk=dead_pid_elsewhere.pk).status == JobStatus.RUNNING


def test_the_reaper_checks_pids_only_for_its_own_host(on_host_a):
    mine_dead = running(f"host-a:{dead_pid()}")
    mine_alive = running(f"host-a:{os.getpid()}")
    # The machine's own name is not WORKER_HOST here: its dead pid is another host's business.
    machine_name_dead = running(f"{os.uname().nodename}:{dead_pid()}")
    assert training_jobs_reap() == [(mine_dead.pk, "requeued")]  # at once, without waiting for the lease
    assert TrainingJob.objects.get(pk=mine_alive.pk).status == JobStatus.RUNNING
    assert TrainingJob.objects.get(pk=machine_name_dead.pk).status == JobStatus.RUNNING


def test_a_claim_names_the_worker_by_worker_host(on_host_a):
    model = AIModelFactory()
    job = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.QUEUED)
    claimed = training_job_claim(job_id=job.pk)
    assert claimed is not None and claimed.worker == f"host-a:{os.getpid()}"


def queued_tasks() -> list[tuple[str, str, str | None]]:
    """(queue, function, cluster in the package) of every task in the ORM broker's queues."""
    tasks = []
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        tasks.append((row.key, task["func"], task.get("cluster")))
    return tasks


def test_task_enqueue_routes_each_kind_of_work_to_its_cluster(on_host_a, settings, django_capture_on_commit_callbacks):
    settings.TRAINING_CLUSTER, settings.MONITORING_CLUSTER = "gpu", "mon"
    with pytest.raises(TypeError):
        task_enqueue(RUN_TRAINING, 1, why_later="-")  # type: ignore[call-arg]  # every caller names its cluster
    model = AIModelFactory()
    queued = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.QUEUED)
    assert training_job_enqueue(queued.pk)
    lost = running(f"host-a:{dead_pid()}")
    with django_capture_on_commit_callbacks(execute=True):
        assert training_jobs_reap() == [(lost.pk, "requeued")]  # the reaper's requeue goes where starts go
    _enqueue_drift_warmup(model.pk)
    _enqueue_resolution(model.default_dataset.pk)
    assert queued_tasks() == [
        ("gpu", RUN_TRAINING, "gpu"),
        ("gpu", RUN_TRAINING, "gpu"),
        ("mon", "models_mgmt.tasks.drift_reports_warm", "mon"),
        ("mon", "models_mgmt.tasks.predictions_resolve", "mon"),
        ("mon", "models_mgmt.tasks.drift_reports_warm", "mon"),
    ]


def test_the_product_schedules_follow_monitoring_cluster_after_every_migrate(db, settings):
    # A transactional test's flush may have removed the migrations' rows: the product's own, and one of a person's.
    reaper, _ = Schedule.objects.update_or_create(
        name="techanal: reap training jobs",
        defaults={"func": "models_mgmt.tasks.training_jobs_reap", "schedule_type": "I", "minutes": 1},
    )
    checks, _ = Schedule.objects.update_or_create(
        name="techanal: monitoring checks",
        defaults={"func": "models_mgmt.tasks.monitoring_checks_run", "schedule_type": "I", "minutes": 60},
    )
    someone_elses = Schedule.objects.create(name="backup", func="math.floor", schedule_type="D", cluster="ops")

    settings.MONITORING_CLUSTER = "mon"
    call_command("migrate", verbosity=0)
    assert {s.name: s.cluster for s in Schedule.objects.filter(pk__in=[reaper.pk, checks.pk, someone_elses.pk])} == {
        reaper.name: "mon",
        checks.name: "mon",
        "backup": "ops",
    }
    settings.MONITORING_CLUSTER = settings.Q_CLUSTER["name"]  # back to one cluster: no cluster, as created
    call_command("migrate", verbosity=0)
    assert set(Schedule.objects.filter(pk__in=[reaper.pk, checks.pk]).values_list("cluster", flat=True)) == {None}
    assert Schedule.objects.get(pk=someone_elses.pk).cluster == "ops"


def test_health_reports_the_training_queue_and_the_cluster_names(db, api, settings):
    settings.TRAINING_CLUSTER, settings.MONITORING_CLUSTER = "gpu", "mon"
    model = AIModelFactory()
    job = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.QUEUED)
    training_job_enqueue(job.pk)
    broker = api(UserFactory(role=Role.VIEWER)).get("/api/health/").data["components"]["broker"]
    assert (broker["queued"], broker["trainingQueued"]) == (0, 1)  # the default cluster's queue is another
    assert (broker["trainingCluster"], broker["monitoringCluster"]) == ("gpu", "mon")


def settings_in_a_process(**env: str) -> subprocess.CompletedProcess[str]:
    """django-q2's Conf as a qcluster process with this environment reads it."""
    return django_in_a_process(
        "import json; from django_q.conf import Conf; print(json.dumps([Conf.CLUSTER_NAME, Conf.PREFIX]))",
        settings_module="tests.settings",
        drop=("Q_CLUSTER_NAME", "TRAINING_CLUSTER", "MONITORING_CLUSTER"),
        **env,
    )


def test_q_cluster_name_selects_a_known_cluster_and_refuses_an_unknown_one():
    served = settings_in_a_process(Q_CLUSTER_NAME="gpu", TRAINING_CLUSTER="gpu")
    assert served.returncode == 0, served.stderr  # django-q2 1.11.1 needs ALT_CLUSTERS for this
    assert json.loads(served.stdout) == ["gpu", "techanal"]  # its own queue; the same signing salt as the site
    typo = settings_in_a_process(Q_CLUSTER_NAME="gpus", TRAINING_CLUSTER="gpu")
    assert typo.returncode != 0 and "Q_CLUSTER_NAME='gpus'" in typo.stderr


@pytest.fixture
def redis_broker(on_host_a, monkeypatch):
    """An empty Redis database as this process's django-q2 broker (tests/settings.py uses the ORM one)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:  # CI starts Redis (.ci/run): its absence is a failure
        pytest.fail(f"Redis at 127.0.0.1:6379 is needed for the broker-queue tests: {exc}")
    # django-q2 reads its broker from settings once, at import.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    monkeypatch.setattr(queue, "_brokers", {})
    yield client
    client.flushdb()


def queued_and_sent(enqueued_age_s: float = 0) -> TrainingJob:
    model = AIModelFactory()
    job = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.QUEUED)
    assert training_job_enqueue(job.pk)
    TrainingJob.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=enqueued_age_s))
    return TrainingJob.objects.get(pk=job.pk)


def test_a_queued_job_whose_task_a_lost_host_took_is_sent_again_once_the_lease_has_passed(redis_broker, settings):
    settings.TRAINING_CLUSTER = "gpu"
    queue_key = "django_q:gpu:q"
    pulled = queued_and_sent(enqueued_age_s=61)
    pulled_just_now = queued_and_sent(enqueued_age_s=30)
    waits_its_turn = queued_and_sent(enqueued_age_s=61)
    assert training_jobs_waiting("gpu") == {waits_its_turn.pk, pulled.pk, pulled_just_now.pk}
    # A host's pusher pops tasks from the head ahead of its workers; killed, it takes them with it.
    assert len(redis_broker.lpop(queue_key, 2)) == 2
    assert training_jobs_waiting("gpu") == {waits_its_turn.pk}
    redis_broker.rpush(queue_key, b"signed with another key")  # no host could run it either: skipped

    assert training_jobs_reap() == [(pulled.pk, "re-sent")]
    resent = TrainingJob.objects.get(pk=pulled.pk)
    assert resent.status == JobStatus.QUEUED and resent.enqueued_at > pulled.enqueued_at  # the lease starts again
    assert training_jobs_waiting("gpu") == {waits_its_turn.pk, pulled.pk}
    assert training_jobs_reap() == []  # once: its task is back in the queue
    for job in (waits_its_turn, pulled_just_now):
        assert TrainingJob.objects.get(pk=job.pk).enqueued_at == job.enqueued_at

    # Should the lost host's copy have run after all, the second delivery writes nothing.
    assert training_job_claim(job_id=pulled.pk) is not None
    before = model_to_dict(TrainingJob.objects.get(pk=pulled.pk)), ProgressEvent.objects.filter(job=pulled).count()
    assert training_job_execute(job_id=pulled.pk).status == "skipped"
    assert (
        model_to_dict(TrainingJob.objects.get(pk=pulled.pk)),
        ProgressEvent.objects.filter(job=pulled).count(),
    ) == before


def test_the_orm_broker_keeps_taken_tasks_so_a_long_queued_job_is_left_alone(on_host_a, settings):
    job = queued_and_sent(enqueued_age_s=3600)
    # Taken by a host that died: the row stays, locked, and is handed out again after `retry` by itself.
    assert OrmQ.objects.update(lock=timezone.now() + timedelta(seconds=Conf.RETRY)) == 1
    assert training_jobs_waiting(settings.TRAINING_CLUSTER) is None
    assert training_jobs_reap() == []
    assert TrainingJob.objects.get(pk=job.pk).enqueued_at == job.enqueued_at
