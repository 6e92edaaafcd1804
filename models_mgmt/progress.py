"""The one publisher of progress events: a persisted row first, then (with Redis) a push.

Every event lands in `ProgressEvent` inside the transaction of the change it reports, with a
gap-free `seq` per job (or per model, for model events such as activations and alerts). Delivery
to websockets then depends on the deployment:

* with `REDIS_URL` the event is pushed through the channel layer on commit, across processes;
* on the embedded default (in-memory channel layer, which does not cross processes) each daphne
  process runs one relay that reads new rows from the database (see `relay.py`).

Consumers deduplicate by `seq` and fill any gap from the table, so a reconnecting client loses
nothing in either mode.

While a job runs, `JobProgress` emits a `job.progress` event every `EMIT_INTERVAL_S` from a
background thread (whether or not the loss changed), which also writes the job row's progress
and heartbeat and notices stop requests; the engine's callbacks only update what it reports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from models_mgmt.choices import JobStatus
from models_mgmt.models import AIModel, ProgressEvent, TrainingEpoch, TrainingJob

logger = logging.getLogger(__name__)
EMIT_INTERVAL_S = 0.4  # at least one event per 0.5 s, at most 2.5 per second per job
MIN_EMIT_GAP_S = 0.25  # the final event waits this long after the previous one: never over 4/s
LIVE_KEYS = ("loss", "valLoss", "metrics", "eta", "lastEpoch")


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
    from channels.layers import get_channel_layer

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


def job_payload(job: TrainingJob, event_type: str, seq: int, live: dict[str, Any]) -> dict[str, Any]:
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
        "version": job.version.version if job.version_id else None,
        "errorCode": job.error_code or None,
        "error": job.error or None,
        "timestamp": _iso_now(),
    }


def publish_job_event(job: TrainingJob, event_type: str, live: dict[str, Any] | None = None) -> dict[str, Any]:
    """Persist the job's next event; call inside the transaction that changed the job.

    `live` carries what only the running worker knows (loss, ETA, ...); without it the values of
    the job's previous event are repeated, so every event is a complete snapshot.
    """
    with transaction.atomic():
        TrainingJob.objects.filter(pk=job.pk).update(event_seq=F("event_seq") + 1)  # row lock: seq = commit order
        seq = TrainingJob.objects.filter(pk=job.pk).values_list("event_seq", flat=True).get()
        job.event_seq = seq
        if live is None:
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
    with transaction.atomic():
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


def epoch_rows_save(job_id: int, epochs: list[dict[str, Any]]) -> None:
    """Upsert per-epoch history rows (from live reports, or a finished run's whole history)."""
    TrainingEpoch.objects.bulk_create(
        [
            TrainingEpoch(
                job_id=job_id,
                epoch=e["epoch"],
                train_loss=e["train_loss"],
                val_loss=e["val_loss"],
                metrics=e["metrics"],
                duration_s=e["duration_s"],
            )
            for e in epochs
        ],
        update_conflicts=True,
        unique_fields=["job", "epoch"],
        update_fields=["train_loss", "val_loss", "metrics", "duration_s"],
    )


@dataclass
class JobProgress:
    """The worker side of one run: receives the engine's reports, emits events on a clock."""

    job_id: int
    interval_s: float = EMIT_INTERVAL_S
    worker: str = ""  # host:pid that claimed the job; a row owned by someone else is not ours to write
    stop: threading.Event = field(default_factory=threading.Event)
    shutdown: threading.Event = field(default_factory=threading.Event)
    taken_over: threading.Event = field(default_factory=threading.Event)
    _latest: Any = None
    _last_epoch: Any = None
    _finished: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending_epochs: list = field(default_factory=list)
    _thread: threading.Thread | None = None

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.shutdown.is_set() or self.taken_over.is_set()

    def on_progress(self, report: Any) -> None:  # engine.reporting.ProgressReport
        self._latest = report

    def on_epoch(self, report: Any) -> None:  # engine.reporting.EpochReport
        """Noted only: the emitter thread writes the row, so the training loop never waits on the DB."""
        with self._lock:
            self._last_epoch = report
            self._pending_epochs.append(report)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"job-{self.job_id}-progress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop emitting; a last progress event is written so the feed shows the final numbers."""
        self._finished.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        try:
            last = time.monotonic()
            while not self._finished.wait(self.interval_s):
                try:
                    self.emit()
                except Exception:
                    logger.exception("progress event of job %s failed", self.job_id)
                    close_old_connections()
                last = time.monotonic()
            time.sleep(max(0.0, MIN_EMIT_GAP_S - (time.monotonic() - last)))
            try:
                self.emit()
            except Exception:  # the database may be down; the job's outcome is recorded elsewhere
                logger.exception("final progress event of job %s failed", self.job_id)
        finally:
            connection.close()

    def live(self) -> dict[str, Any]:
        report, epoch = self._latest, self._last_epoch
        return {
            "loss": round(float(report.loss), 6) if report is not None else None,
            "valLoss": round(float(report.val_loss), 6) if report is not None and report.val_loss is not None else None,
            "metrics": dict(report.metrics) if report is not None else {},
            "eta": round(float(report.eta_s), 1) if report is not None and report.eta_s is not None else None,
            "lastEpoch": (
                {
                    "epoch": epoch.epoch,
                    "trainLoss": epoch.train_loss,
                    "valLoss": epoch.val_loss,
                    "metrics": epoch.metrics,
                }
                if epoch is not None
                else None
            ),
        }

    def emit(self) -> None:
        """Write the snapshot and heartbeat, publish it, and notice a stop request."""
        report = self._latest
        with self._lock:
            epochs, self._pending_epochs = self._pending_epochs, []
        if epochs:
            epoch_rows_save(self.job_id, [vars(e) for e in epochs])
        with transaction.atomic():
            job = TrainingJob.objects.select_for_update().select_related("model").filter(pk=self.job_id).first()
            if job is None or job.status not in (JobStatus.RUNNING, JobStatus.STOPPING):
                return
            if self.worker and job.worker != self.worker:
                self.taken_over.set()  # reaped while this worker was stuck: stop and write nothing more
                return
            if job.status == JobStatus.STOPPING:
                self.stop.set()
            if report is not None:
                job.progress = min(max(float(report.progress), 0.0), 100.0)
                job.epoch = report.epoch
                job.step = report.step
            job.heartbeat_at = timezone.now()
            job.save(update_fields=["progress", "epoch", "step", "heartbeat_at"])
            publish_job_event(job, "job.progress", self.live())
