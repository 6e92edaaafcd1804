"""The worker side of a running job: receives the engine's reports and emits them on a clock.

While a job runs, `JobProgress` emits a `job.progress` event every `EMIT_INTERVAL_S` from a
background thread (whether or not the loss changed), which also writes the job row's progress,
heartbeat and cost (the run's `Meter`) and notices stop requests; the engine's callbacks only update what it reports.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from models_mgmt.choices import JobStatus
from models_mgmt.engine.metering import Meter
from models_mgmt.engine.reporting import EpochReport, ProgressReport
from models_mgmt.models import TrainingJob
from models_mgmt.realtime.events import publish_job_event
from models_mgmt.services.job_costs import job_cost_carried, job_cost_finish, job_cost_record
from models_mgmt.services.training_jobs import training_epochs_save

logger = logging.getLogger(__name__)
EMIT_INTERVAL_S = 0.4  # at least one event per 0.5 s, at most 2.5 per second per job
MIN_EMIT_GAP_S = 0.25  # the final event waits this long after the previous one: never over 4/s


@dataclass
class JobProgress:
    """The worker side of one run: receives the engine's reports, emits events on a clock."""

    job_id: int
    interval_s: float = EMIT_INTERVAL_S
    worker: str = ""  # host:pid that claimed the job; a row owned by someone else is not ours to write
    stop: threading.Event = field(default_factory=threading.Event)
    shutdown: threading.Event = field(default_factory=threading.Event)
    taken_over: threading.Event = field(default_factory=threading.Event)
    phase: str = "loading_data"  # the phase the feed names now
    outcome: dict[str, Any] | None = None  # set by the worker once the run's result is known
    meter: Meter | None = None  # what the run uses: written with every heartbeat (set by `start`)
    _latest: ProgressReport | None = None
    _last_epoch: EpochReport | None = None
    _finished: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending_epochs: list[EpochReport] = field(default_factory=list)
    _phases_ahead: list[str] = field(default_factory=list)  # entered, not yet named by an event
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.shutdown.is_set() or self.taken_over.is_set()

    def training_started(self) -> bool:
        """The engine has reported from its training loop; before that nothing polls `should_stop`."""
        return self._latest is not None

    def on_progress(self, report: ProgressReport) -> None:
        self._latest = report

    def on_phase(self, phase: str) -> None:
        """The engine (or the worker) moved to another phase: the emitter names it with its next
        event, sent early (but never within MIN_EMIT_GAP_S of the previous one, so at most 4 events
        a second). Every phase entered gets an event of its own, in order, however short it was: a
        phase entered while another still waits for its event waits its turn."""
        with self._lock:
            self._phases_ahead.append(phase)
        self._wake.set()

    def on_epoch(self, report: EpochReport) -> None:
        """Noted only: the emitter thread writes the row, so the training loop never waits on the DB."""
        with self._lock:
            self._last_epoch = report
            self._pending_epochs.append(report)

    def start(self) -> None:
        if self.meter is None:
            self.meter = Meter(carried=job_cost_carried(self.job_id))  # a resumed job adds to earlier attempts
        self.meter.start()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.job_id}-progress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop emitting; a last progress event is written so the feed shows the final numbers."""
        self._finished.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def cost_finish(self) -> None:
        """The run is over: its cost gets the figures of its very end (after the last heartbeat)."""
        if self.meter is not None:
            job_cost_finish(job_id=self.job_id, sample=self.meter.sample(), worker=self.worker)

    def _run(self) -> None:
        try:
            started = ended = time.monotonic()
            while True:
                # The cadence counts from the start of the previous event, not its end: a slow write
                # (a loaded machine, a busy SQLite) must not stretch the gap to interval + write time.
                self._wake.wait(max(0.0, started + self.interval_s - time.monotonic()))
                self._wake.clear()
                if self._finished.is_set():
                    break
                # Early (a phase change) or late (a slow write): never within MIN_EMIT_GAP_S of the end
                # of the previous event, whose timestamp is taken as it is written.
                time.sleep(max(0.0, ended + MIN_EMIT_GAP_S - time.monotonic()))
                started = time.monotonic()
                try:
                    self.emit()
                except Exception:
                    logger.exception("progress event of job %s failed", self.job_id)
                    close_old_connections()
                ended = time.monotonic()
                if self._phases_ahead:
                    self._wake.set()  # the next phase is named as soon as the gap allows
            # The last events: one for each phase not yet named (the last of them is the final one).
            while True:
                time.sleep(max(0.0, MIN_EMIT_GAP_S - (time.monotonic() - ended)))
                try:
                    self.emit()
                except Exception:  # the database may be down; the job's outcome is recorded elsewhere
                    logger.exception("final progress event of job %s failed", self.job_id)
                    break
                ended = time.monotonic()
                if not self._phases_ahead:
                    break
        finally:
            connection.close()

    def live(self) -> dict[str, Any]:
        report, epoch = self._latest, self._last_epoch
        phase = self.phase
        return {
            "loss": round(float(report.loss), 6) if report is not None else None,
            "valLoss": round(float(report.val_loss), 6) if report is not None and report.val_loss is not None else None,
            "metrics": dict(report.metrics) if report is not None else {},
            "eta": (
                round(float(report.eta_s), 1)
                if report is not None and report.eta_s is not None and phase == "training"
                else None
            ),
            "phase": phase,
            "outcome": self.outcome,
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
        report, finished_epoch = self._latest, self._last_epoch
        with self._lock:
            epochs, self._pending_epochs = self._pending_epochs, []
            if self._phases_ahead:  # one phase per event: each is named once, in order
                self.phase = self._phases_ahead.pop(0)
        if epochs:
            training_epochs_save(self.job_id, [vars(e) for e in epochs])
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
                job.progress = float(report.progress)
                job.epoch = report.epoch
                job.step = report.step
            if finished_epoch is not None and job.total_epochs:
                # A finished epoch is news even when no throttled report followed it (the last one).
                job.progress = max(job.progress, 100.0 * finished_epoch.epoch / job.total_epochs)
                job.epoch = max(job.epoch, finished_epoch.epoch)
            job.progress = min(max(job.progress, 0.0), 99.0)  # 100 means done: the terminal status sets it
            job.heartbeat_at = timezone.now()
            job.save(update_fields=["progress", "epoch", "step", "heartbeat_at"])
            if self.meter is not None:
                try:  # its own savepoint: a cost that cannot be written never costs the job its heartbeat
                    with transaction.atomic():
                        job_cost_record(job=job, sample=self.meter.sample())
                except Exception:
                    logger.exception("the cost of job %s was not written with this heartbeat", self.job_id)
            publish_job_event(job, "job.progress", self.live())
