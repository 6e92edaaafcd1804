"""The reaper: finds jobs whose worker is gone and resumes, stops or fails them; hands over queued
jobs the broker never accepted or whose task a lost host took. Runs when a worker starts and on a schedule."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from models_mgmt.choices import JobStatus, StudyRole
from models_mgmt.models import TrainingJob
from models_mgmt.services.queue import training_jobs_waiting
from models_mgmt.services.studies import studies_advance_live
from models_mgmt.services.training_jobs import training_job_enqueue, training_job_finish, training_job_requeue


def _worker_alive(worker: str) -> bool | None:
    """True/False for a worker on this host (WORKER_HOST); None when it ran on another host, whose
    pids mean nothing here: only its heartbeat tells. The broker keeps no task a dead host had
    taken (Redis pops it; the ORM broker's `retry` comes hours later), so this lease is what hands
    a lost host's job to the hosts left."""
    host, _, pid = worker.rpartition(":")
    if host != settings.WORKER_HOST or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed worker whose parent died too stays a zombie until init reaps it: that is gone
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _lost_tasks_resend(stale_before: datetime) -> list[tuple[int, str]]:
    """Re-send queued jobs handed to the broker over a lease ago whose task is no longer in the
    training cluster's Redis queue: a host killed outright took them with it (django-q2's pusher
    pulls tasks ahead of its workers, up to TRAINING_WORKERS² + 1). A task in a live host's local
    queue looks missing too; it gets one duplicate per lease at most (enqueued_at is renewed).

    A duplicate delivery is harmless: training_job_claim refuses a job that is no longer queued, and
    the worker returns 'skipped' without writing to the job; the first copy to arrive runs it.
    """
    waited = dict(
        TrainingJob.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=stale_before).values_list(
            "pk", "enqueued_at"
        )
    )
    if not waited:
        return []
    waiting = training_jobs_waiting(settings.TRAINING_CLUSTER)  # read after the jobs: a task popped since is a claim
    if waiting is None:
        return []  # the ORM broker keeps a taken task's row and hands it out again after `retry`
    done: list[tuple[int, str]] = []
    for job_id, enqueued_at in waited.items():
        if job_id in waiting:
            continue  # still in the queue: it waits its turn
        # Only one reaper re-sends it (each worker start reaps, besides the schedule); a claim since wins.
        mine = TrainingJob.objects.filter(pk=job_id, status=JobStatus.QUEUED, enqueued_at=enqueued_at)
        if not mine.update(enqueued_at=timezone.now()):
            continue
        if training_job_enqueue(job_id):
            done.append((job_id, "re-sent"))
        else:  # the broker is down: the never-enqueued pass hands it over once it answers
            TrainingJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(enqueued_at=None)
    return done


def training_jobs_reap() -> list[tuple[int, str]]:
    """Find running/stopping jobs whose worker is gone; resume them, stop them, or fail them.

    A worker is gone when its process no longer exists on this host, or when its heartbeat is
    older than TRAINING_HEARTBEAT_TIMEOUT_S (the only test for another host's worker). Queued jobs
    that the broker never accepted (it was down when they were started), or whose task left Redis
    over a lease ago without a claim (a killed host had pulled it), are handed over again.
    Returns (job id, what was done) pairs.
    """
    stale_before = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT_S)
    done: list[tuple[int, str]] = []
    never_enqueued = TrainingJob.objects.filter(
        status=JobStatus.QUEUED, enqueued_at__isnull=True, created_at__lt=timezone.now() - timedelta(seconds=30)
    ).values_list("pk", flat=True)
    for job_id in list(never_enqueued):
        if training_job_enqueue(job_id):
            done.append((job_id, "enqueued"))
    done += _lost_tasks_resend(stale_before)
    candidates = TrainingJob.objects.filter(status__in=(JobStatus.RUNNING, JobStatus.STOPPING)).values_list(
        "pk", "worker", "heartbeat_at"
    )
    for job_id, worker, heartbeat in list(candidates):
        alive = _worker_alive(worker)
        if alive is not False and heartbeat and heartbeat >= stale_before:
            continue  # a live worker keeps its heartbeat fresh; a stale one is stuck (or elsewhere and gone)
        with transaction.atomic():
            job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
            if job is None or job.worker != worker or job.status not in (JobStatus.RUNNING, JobStatus.STOPPING):
                continue  # moved on since we looked
        if job.status == JobStatus.STOPPING:
            training_job_finish(job_id, JobStatus.STOPPED, error="worker lost while stopping; checkpoint kept")
            done.append((job_id, "stopped"))
        elif job.study_role == StudyRole.TRIAL:
            # A trial is not resumed: it ends FAIL (study_advance tells the study) and the next one runs.
            training_job_finish(
                job_id, JobStatus.FAILED, error_code="worker_lost", error=f"worker {worker or '?'} lost mid-trial"
            )
            done.append((job_id, "failed"))
        elif job.attempts < settings.TRAINING_MAX_ATTEMPTS:
            training_job_requeue(
                job_id=job_id, reason=f"worker {worker or '?'} lost; resuming from the last checkpoint"
            )
            done.append((job_id, "requeued"))
        else:
            training_job_finish(
                job_id,
                JobStatus.FAILED,
                error_code="worker_lost",
                error=f"the worker running this job was lost {job.attempts} time(s); giving up",
            )
            done.append((job_id, "failed"))
    studies_advance_live()  # trials that ended here, or whose worker could not advance the study
    return done
