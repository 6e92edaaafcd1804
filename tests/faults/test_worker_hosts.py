"""Several worker hosts over Redis: qcluster processes, each started with its own environment as a
second machine would be (own WORKER_HOST; the same SECRET_KEY, REDIS_URL and DATABASE_URL), drain
one queue; a host killed mid-job has its job handed to another by the database lease; training can
be routed to a cluster of its own (django-q2's cluster names) while monitoring runs elsewhere.

PostgreSQL only (the database several machines share; the SQLite half of the suite skips these) and
Redis database 14 (no other test uses it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.db.models import Q
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule, Task
from django_q.signing import SignedPackage

from models_mgmt.api.serializers import FineTuningConfigSerializer
from models_mgmt.choices import TERMINAL_JOB_STATUSES, JobStatus
from models_mgmt.models import ModelVersion, TrainingJob
from models_mgmt.services import queue, training_job_start
from models_mgmt.services.queue import RUN_TRAINING, WARM_DRIFT_REPORTS, schedules_follow_monitoring_cluster
from tests.live import LiveProcesses, database_url

from .conftest import (
    JOBS_PER_MODEL,
    LONG,
    MODELS,
    TINY,
    assert_job_seqs_gap_free,
    job_finished,
    running_with_epochs,
    status_events,
    submit_all,
    trainer_with_model,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
REDIS_URL = "redis://127.0.0.1:6379/14"  # no other test uses this database
REAPER = "techanal: reap training jobs"
MONITORING_CHECKS = "techanal: monitoring checks"
MONITORING_CHECKS_RUN = "models_mgmt.tasks.monitoring_checks_run"
GPU_PASS = "test: the gpu cluster's schedule"


@pytest.fixture
def redis_queue(requires_postgres, monkeypatch) -> Iterator:
    """An empty Redis database as the broker of the hosts and of this process (which starts the jobs)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:
        pytest.fail(f"Redis at 127.0.0.1:6379 is needed for the worker-host tests: {exc}")
    # django-q2 reads its broker from settings once, at import: this process was set up without REDIS_URL.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    monkeypatch.setattr(queue, "_brokers", {})
    try:
        yield client
    finally:
        client.flushdb()


@pytest.fixture
def hosts(redis_queue, live, settings) -> Callable[..., LiveProcesses]:
    """hosts(name, **env) -> a started qcluster standing for the host `name`. Set up after Redis, so
    `live` kills every host (its whole process group) before the Redis database is emptied."""

    def start(name: str, **env: str) -> LiveProcesses:
        host = live(
            WORKER_HOST=name,
            SECRET_KEY=settings.SECRET_KEY,  # this process's: it signs the tasks every host must read
            REDIS_URL=REDIS_URL,
            DATABASE_URL=database_url(),
            TRAINING_WORKERS="1",
            OMP_NUM_THREADS="1",
            **env,
        )
        host.qcluster()
        return host

    return start


def outputs(*hosts: LiveProcesses) -> Callable[[], str]:
    return lambda: "\n".join(f"--- {h.env['WORKER_HOST']}\n{h.output()[-3000:]}" for h in hosts)


def host_of(job: TrainingJob) -> str:
    return job.worker.rpartition(":")[0]


def start_job(trainer, model, body: dict) -> int:
    data = FineTuningConfigSerializer(data=body, context={"model": model})
    assert data.is_valid(), data.errors
    v = data.validated_data
    job = training_job_start(
        actor=trainer, model=model, config=v["resolved"].config, dataset=v["resolved"].dataset, base_version=None
    )
    return job.pk


def test_two_hosts_drain_a_hundred_jobs_each_run_exactly_once(hosts):
    pairs = [trainer_with_model(f"hosts-{i}") for i in range(MODELS)]
    a, b = hosts("host-a"), hosts("host-b")
    log = outputs(a, b)
    deadline = time.monotonic() + 360
    accepted, refusals = submit_all(pairs, deadline)
    assert len(accepted) == MODELS * JOBS_PER_MODEL, (len(accepted), log())
    wait_for(
        lambda: not TrainingJob.objects.exclude(status__in=TERMINAL_JOB_STATUSES).exists(),
        max(deadline - time.monotonic(), 60),
        "every job to end",
        log,
    )

    jobs = list(TrainingJob.objects.order_by("pk"))
    assert [j.pk for j in jobs] == sorted(accepted)
    failed = [(j.pk, j.status, j.error_code, j.error) for j in jobs if j.status != JobStatus.SUCCEEDED]
    assert not failed, (failed, log())
    assert all(j.attempts == 1 for j in jobs), [(j.pk, j.attempts) for j in jobs if j.attempts != 1]
    for job in jobs:
        assert status_events(job.pk) == ["queued", "running", "succeeded"], job.pk  # one running event
        assert_job_seqs_gap_free(job.pk)
    # One django-q2 task per job, run once (the task name carries the job id).
    tasks = Counter(
        int(name.split("-")[2]) for name in Task.objects.filter(func=RUN_TRAINING).values_list("name", flat=True)
    )
    assert tasks == Counter({j.pk: 1 for j in jobs})
    assert ModelVersion.objects.count() == len(jobs)
    assert len({j.version_id for j in jobs}) == len(jobs)
    per_host = Counter(host_of(j) for j in jobs)
    assert set(per_host) == {"host-a", "host-b"} and min(per_host.values()) > 0, per_host

    first_claim = min(j.started_at for j in jobs)
    last_finish = max(j.finished_at for j in jobs)
    span = (last_finish - first_claim).total_seconds()
    print(
        f"\ndrain: {len(jobs)} jobs over {MODELS} models, 2 hosts x 1 worker: {span:.1f} s first claim to last "
        f"finish = {60 * len(jobs) / span:.0f} jobs/min; per host {dict(per_host)}; {sum(refusals.values())} 409s"
    )


def test_a_killed_hosts_job_is_handed_over_by_the_lease_and_resumed_from_its_checkpoint(hosts):
    """With its queued job too: django-q2's pusher had pulled that one's task from Redis ahead of its
    busy worker, and the reaper sends it again once the lease has passed."""
    trainer, model = trainer_with_model("hosts-kill")
    other_trainer, other_model = trainer_with_model("hosts-kill-queued")
    lease = {"TRAINING_HEARTBEAT_TIMEOUT_S": "20"}
    lost, survivor = "host-a", "host-b"
    both = {lost: hosts(lost, **lease)}  # alone at first, so that it is the host that pulls the second task
    job_id = start_job(trainer, model, {**LONG, "epochs": 5})
    job = wait_for(running_with_epochs(job_id, 2), 180, "the job to run two epochs", outputs(*both.values()))
    assert host_of(job) == lost
    queued_id = start_job(other_trainer, other_model, TINY)
    sent_at = TrainingJob.objects.get(pk=queued_id).enqueued_at
    wait_for(lambda: RUN_TRAINING not in waiting(), 60, f"{lost}'s pusher to pull the second task", outputs(both[lost]))

    both[lost].kill(both[lost].processes[0])  # the whole host at once: sentinel, pusher, monitor, worker
    killed_at = timezone.now()
    both[survivor] = hosts(survivor, **lease)  # its workers start with the lease still running
    log = outputs(*both.values())
    last_heartbeat = TrainingJob.objects.get(pk=job_id).heartbeat_at  # nobody writes it again until the handover
    before = {e.epoch: (e.train_loss, e.duration_s) for e in TrainingJob.objects.get(pk=job_id).epochs.all()}
    # Redis popped both tasks when the lost host took them: nothing in the broker brings the jobs back.
    assert RUN_TRAINING not in waiting()
    assert TrainingJob.objects.get(pk=job_id).status == JobStatus.RUNNING
    assert TrainingJob.objects.get(pk=queued_id).status == JobStatus.QUEUED
    # The survivor's reaper (the minute schedule) is due once the lease has passed; its scheduler looks every 30 s.
    Schedule.objects.filter(name=REAPER).update(next_run=killed_at + timedelta(seconds=21))

    job = wait_for(job_finished(job_id), 240, f"{survivor} to finish the job", log)
    assert job.status == JobStatus.SUCCEEDED, (job.error, log())
    assert (job.attempts, host_of(job)) == (2, survivor)
    requeue = model.audit_events.get(action="job.requeued")
    assert lost in requeue.after["reason"]
    assert (requeue.created_at - last_heartbeat).total_seconds() >= 20  # not before the lease ran out
    assert sorted(job.epochs.values_list("epoch", flat=True)) == list(range(1, 6))  # each epoch recorded once
    after = {e.epoch: (e.train_loss, e.duration_s) for e in job.epochs.filter(epoch__in=list(before))}
    assert after == before  # resumed from the checkpoint: the epochs before the kill did not run again
    assert list(ModelVersion.objects.filter(model=model).values_list("version", flat=True)) == ["v1.0.0"]
    assert status_events(job_id) == ["queued", "running", "queued", "running", "succeeded"]
    assert_job_seqs_gap_free(job_id)

    queued = wait_for(job_finished(queued_id), 120, f"{survivor} to run the queued job", log)
    assert queued.status == JobStatus.SUCCEEDED, (queued.error, log())
    assert (queued.attempts, host_of(queued)) == (1, survivor)  # never started on the lost host
    assert (queued.enqueued_at - sent_at).total_seconds() >= 20  # sent again, not before the lease ran out
    assert status_events(queued_id) == ["queued", "running", "succeeded"]
    runs = Task.objects.filter(func=RUN_TRAINING, name__startswith=f"training-job-{queued_id}-")
    wait_for(runs.exists, 60, "the queued job's task result", log)  # saved by the cluster after the job ends
    assert runs.count() == 1  # one delivery ran it


def drain(host: LiveProcesses) -> None:
    """What the operations guide says: SIGINT to the qcluster's whole process group, every second
    until it is gone (SIGTERM to the group can leave django-q2's cluster parent hanging)."""
    process = host.processes[0]
    deadline = time.monotonic() + 60
    while process.poll() is None:
        assert time.monotonic() < deadline, f"the drained host did not exit\n{host.output()[-3000:]}"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
    host.processes.remove(process)
    left = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(process.pid)], capture_output=True, text=True).stdout
    assert not left.strip(), f"the drained host left processes behind:\n{left}"


def test_a_drained_host_hands_its_job_to_another_without_counting_an_attempt(hosts):
    trainer, model = trainer_with_model("hosts-drain")
    both = {"host-a": hosts("host-a"), "host-b": hosts("host-b")}
    log = outputs(*both.values())
    # Long enough that the drained host, should it take its own requeued task back (see below), is
    # still training when the next SIGINT comes.
    job_id = start_job(trainer, model, {**LONG, "epochs": 12})
    job = wait_for(running_with_epochs(job_id, 1), 180, "the job to run an epoch", log)
    drained = host_of(job)
    drain(both[drained])  # returns once every process of that host is gone
    job = wait_for(job_finished(job_id), 180, "the other host to finish the job", log)
    assert job.status == JobStatus.SUCCEEDED, (job.error, log())
    assert host_of(job) != drained, (status_events(job_id), job.epoch, log())
    assert job.attempts == 1  # a drain is not a failed attempt
    assert sorted(job.epochs.values_list("epoch", flat=True)) == list(range(1, 13))  # resumed, each epoch once
    assert list(ModelVersion.objects.filter(model=model).values_list("version", flat=True)) == ["v1.0.0"]
    # Queued again by the drained worker (again, should its cluster's pusher have taken the task back
    # in the second before it stopped listening: the next SIGINT hands it over before training).
    statuses = status_events(job_id)
    assert statuses[:2] == ["queued", "running"] and statuses[-2:] == ["running", "succeeded"], statuses
    requeues = list(model.audit_events.filter(action="job.requeued").values_list("after", flat=True))
    assert statuses.count("queued") == len(requeues) + 1 >= 2, (statuses, requeues)
    assert all("shut down" in r["reason"] for r in requeues), requeues


def waiting(cluster: str = "techanal") -> list[str]:
    """The functions of the tasks waiting in `cluster`'s Redis queue (none that a host has taken)."""
    import redis

    packages = redis.Redis.from_url(REDIS_URL).lrange(f"django_q:{cluster}:q", 0, -1)
    return [SignedPackage.loads(p)["func"] for p in packages]


def test_training_runs_on_its_own_cluster_and_monitoring_on_the_default_one(hosts, settings):
    """django-q2's pusher writes the name of the cluster that pulled a task into its Task row
    (Task.cluster): that is the evidence of where each piece of work ran."""
    settings.TRAINING_CLUSTER = "gpu"  # this process starts the job: it routes it as the hosts do
    trainer, model = trainer_with_model("hosts-gpu")
    routing = {"TRAINING_CLUSTER": "gpu"}  # every process, whichever cluster it serves
    Schedule.objects.update_or_create(  # migration 0007's, which a transactional test's flush removed
        name=MONITORING_CHECKS,
        defaults={"func": MONITORING_CHECKS_RUN, "schedule_type": "I", "minutes": 60, "next_run": timezone.now()},
    )
    schedules_follow_monitoring_cluster()  # what every migrate does: the default name keeps no cluster
    # A schedule of the gpu cluster, so that its scheduler's pass leaves a task too.
    Schedule.objects.create(
        name=GPU_PASS, func="models_mgmt.tasks.training_jobs_reap", schedule_type="I", minutes=60, cluster="gpu"
    )
    gpu, default = hosts("gpu-host", Q_CLUSTER_NAME="gpu", **routing), hosts("cpu-host", **routing)
    log = outputs(gpu, default)
    job_id = start_job(trainer, model, {**TINY, "activationPolicy": "if_better"})  # activation enqueues a drift warm-up
    job = wait_for(job_finished(job_id), 180, "the job to end", log)
    assert job.status == JobStatus.SUCCEEDED, (job.error, log())
    assert host_of(job) == "gpu-host"
    for what in (RUN_TRAINING, WARM_DRIFT_REPORTS, MONITORING_CHECKS_RUN, GPU_PASS, REAPER):  # both schedulers passed
        wait_for(lambda w=what: Task.objects.filter(Q(func=w) | Q(group=w)).exists(), 120, f"a task of {what}", log)

    def ran_on(**where: str) -> set[str | None]:
        return set(Task.objects.filter(**where).values_list("cluster", flat=True))

    assert ran_on(func=RUN_TRAINING) == {"gpu"}
    assert ran_on(group=GPU_PASS) == {"gpu"}
    assert ran_on(func=WARM_DRIFT_REPORTS) == {"techanal"}  # enqueued by the gpu host's worker, run by the default
    assert ran_on(group=MONITORING_CHECKS) == {"techanal"}
    assert ran_on(group=REAPER) == {"techanal"}  # the minute reaper runs on MONITORING_CLUSTER
    assert (
        Task.objects.filter(func__in=[RUN_TRAINING, WARM_DRIFT_REPORTS, MONITORING_CHECKS_RUN], success=True).count()
        == 3
    )
    assert set(Schedule.objects.filter(name__in=[REAPER, MONITORING_CHECKS]).values_list("cluster", flat=True)) == {
        None
    }
    assert RUN_TRAINING not in waiting("gpu") and WARM_DRIFT_REPORTS not in waiting("techanal")
