"""The one publisher of a running job's progress.

The engine reports through callbacks (at most every 0.5 s); this turns each report into a write of
the job row (progress, epoch, step, heartbeat) and a per-epoch history row, and tells the engine
whether someone asked the job to stop. The websocket feed (a later issue) hangs off the same place.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from django.utils import timezone

from models_mgmt.choices import JobStatus
from models_mgmt.models import TrainingEpoch, TrainingJob


@dataclass
class JobProgress:
    job_id: int
    stop: threading.Event = field(default_factory=threading.Event)
    shutdown: threading.Event = field(default_factory=threading.Event)

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.shutdown.is_set()

    def on_progress(self, report) -> None:
        """Write the snapshot and the heartbeat; notice a stop request made through the API."""
        TrainingJob.objects.filter(pk=self.job_id, status__in=(JobStatus.RUNNING, JobStatus.STOPPING)).update(
            progress=min(max(float(report.progress), 0.0), 100.0),
            epoch=report.epoch,
            step=report.step,
            heartbeat_at=timezone.now(),
        )
        self._check_stop_requested()

    def on_epoch(self, report) -> None:
        TrainingEpoch.objects.update_or_create(
            job_id=self.job_id,
            epoch=report.epoch,
            defaults={
                "train_loss": report.train_loss,
                "val_loss": report.val_loss,
                "metrics": report.metrics,
                "duration_s": report.duration_s,
            },
        )
        TrainingJob.objects.filter(pk=self.job_id).update(heartbeat_at=timezone.now())
        self._check_stop_requested()

    def _check_stop_requested(self) -> None:
        status = TrainingJob.objects.filter(pk=self.job_id).values_list("status", flat=True).first()
        if status == JobStatus.STOPPING:
            self.stop.set()
