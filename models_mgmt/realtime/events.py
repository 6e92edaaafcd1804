"""The one publisher of progress events: a persisted row first, then (with Redis) a push.

Every event lands in `ProgressEvent` inside the transaction of the change it reports, with a
gap-free `seq` per job (or per model, for model events such as activations and alerts). Delivery
to websockets then depends on the deployment:

* with `REDIS_URL` the event is pushed through the channel layer on commit, across processes;
* on the embedded default (in-memory channel layer, which does not cross processes) each web
  process runs one relay that reads new rows from the database (see `relay.py`).

Consumers deduplicate by `seq` and fill any gap from the table, so a reconnecting client loses
nothing in either mode.

The worker's progress thread (`training.progress.JobProgress`) publishes through this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from models_mgmt.choices import TERMINAL_JOB_STATUSES, JobStatus
from models_mgmt.models import AIModel, ProgressEvent, TrainingJob

logger = logging.getLogger(__name__)
LIVE_KEYS = ("loss", "valLoss", "metrics", "eta", "lastEpoch", "phase", "outcome")
# What a job is doing, in order; the worker reports each as it starts. A queued job is "queued",
# a job in a terminal status "finished" (its status says how).
JOB_PHASES = (
    "queued",
    "loading_data",
    "building_features",
    "training",
    "evaluating",
    "backtesting",
    "exporting",
    "registering",
    "finished",
)


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def model_group(model_id: int) -> str:
    return f"model.{model_id}"


def pushes_through_channel_layer() -> bool:
    """True when the channel layer crosses processes (Redis); else the relay delivers."""
    return bool(settings.REDIS_URL)


class _PushLoop:
    """One long-lived event loop per process for pushes from synchronous code.

    `async_to_sync` would start a loop, and so a new Redis connection, for every event; a loop
    that lives on keeps channels_redis's connection (measured: about 11 ms -> 1 ms per event).
    Created lazily per process id, so forked workers get their own.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None
    _lock = threading.Lock()

    @classmethod
    def run(cls, coroutine: Any, timeout: float = 5.0) -> Any:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():
                cls._loop = asyncio.new_event_loop()
                cls._pid = os.getpid()
                threading.Thread(target=cls._loop.run_forever, name="feed-push", daemon=True).start()
            loop = cls._loop
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)


def _push(event: dict[str, Any], groups: list[str]) -> None:
    message = {"type": "feed.event", "event": event}

    async def send_all() -> None:
        layer = get_channel_layer()
        for group in groups:
            await layer.group_send(group, message)

    try:
        _PushLoop.run(send_all())
    except Exception:  # delivery is best effort: the row is the record, consumers catch up
        logger.exception("pushing event to %s failed", groups)


def _after_commit(event: dict[str, Any], groups: list[str]) -> None:
    if pushes_through_channel_layer():
        transaction.on_commit(lambda: _push(event, groups))


def _iso_now() -> str:
    return timezone.now().isoformat()


def _phase(job: TrainingJob, live: dict[str, Any]) -> str | None:
    if job.status == JobStatus.QUEUED:
        return "queued"
    if job.status in TERMINAL_JOB_STATUSES:
        return "finished"
    phase = live.get("phase")
    return "loading_data" if phase in (None, "queued") else phase  # just claimed: the worker loads data next


def job_payload(job: TrainingJob, event_type: str, seq: int, live: dict[str, Any]) -> dict[str, Any]:
    terminal = job.status in TERMINAL_JOB_STATUSES
    return {
        "type": event_type,
        "stream": "job",
        "jobId": job.pk,
        "modelName": job.model.name,
        "seq": seq,
        "status": job.status,
        "progress": round(job.progress, 2),
        "epoch": job.epoch,
        "totalEpochs": job.total_epochs,
        "step": job.step,
        **{key: live.get(key) for key in LIVE_KEYS},
        "phase": _phase(job, live),
        "eta": None if terminal or job.status == JobStatus.QUEUED else live.get("eta"),
        "version": job.version.version if job.version is not None else None,
        "errorCode": job.error_code or None,
        "error": job.error or None,
        "timestamp": _iso_now(),
    }


def publish_job_event(job: TrainingJob, event_type: str, live: dict[str, Any] | None = None) -> dict[str, Any]:
    """Persist the job's next event; call inside the transaction that changed the job.

    `live` carries what only the running worker knows (loss, ETA, ...); without it the values of
    the job's previous event are repeated, so every event is a complete snapshot.
    """
    # savepoint=False: the caller's transaction is the unit (a failure here rolls the change back too).
    with transaction.atomic(savepoint=False):
        TrainingJob.objects.filter(pk=job.pk).update(event_seq=F("event_seq") + 1)  # row lock: seq = commit order
        seq = TrainingJob.objects.filter(pk=job.pk).values_list("event_seq", flat=True).get()
        job.event_seq = seq
        if live is None and seq == 1:
            live = {}  # a job's first event: nothing before it to repeat
        elif live is None:
            previous = (
                ProgressEvent.objects.filter(job_id=job.pk, seq=seq - 1).values_list("payload", flat=True).first()
            )
            live = previous or {}
        payload = job_payload(job, event_type, seq, live)
        ProgressEvent.objects.create(model_id=job.model_id, job_id=job.pk, seq=seq, type=event_type, payload=payload)
        _after_commit(payload, [job_group(job.pk), model_group(job.model_id)])
    return payload


def publish_model_event(model: AIModel, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Persist a model-level event (version activated, alert, ...) on the model's feed."""
    with transaction.atomic(savepoint=False):
        AIModel.objects.filter(pk=model.pk).update(event_seq=F("event_seq") + 1)
        seq = AIModel.objects.filter(pk=model.pk).values_list("event_seq", flat=True).get()
        payload = {
            "type": event_type,
            "stream": "model",
            "modelName": model.name,
            "seq": seq,
            **data,
            "timestamp": _iso_now(),
        }
        ProgressEvent.objects.create(model_id=model.pk, job=None, seq=seq, type=event_type, payload=payload)
        _after_commit(payload, [model_group(model.pk)])
    return payload
