"""Fine-tune a model from the command line, through the same validation and services as the API."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from models_mgmt import selectors, services
from models_mgmt.choices import TERMINAL_JOB_STATUSES
from models_mgmt.engine import timeframes
from models_mgmt.models import TrainingJob
from models_mgmt.services.training_config import training_config_resolve
from models_mgmt.training.progress import JobProgress
from models_mgmt.training.worker import training_job_execute

OPTIONS = {  # --option -> FineTuningConfig wire name, type
    "epochs": ("epochs", int),
    "learning_rate": ("learningRate", float),
    "batch_size": ("batchSize", int),
    "validation_split": ("validationSplit", float),
    "patience": ("earlyStoppingPatience", int),
    "training_data_size": ("trainingDataSize", int),
    "dataset": ("dataset", str),
    "base_model": ("baseModel", str),
    "start_date": ("startDate", timeframes.parse_bar_time),  # YYYY-MM-DD, or ISO 8601 for intraday
    "end_date": ("endDate", timeframes.parse_bar_time),
    "activation_policy": ("activationPolicy", str),
    "evaluation": ("evaluation", str),  # validation | walk_forward
    "walk_forward_folds": ("walkForwardFolds", int),
    "device": ("device", str),  # auto | cpu | cuda
}
DISTRIBUTED_OPTIONS = {  # --option -> key of the config's `distributed` (torchrun's own option names)
    "nproc_per_node": ("nprocPerNode", int),
    "nnodes": ("nnodes", int),
    "rdzv_endpoint": ("rdzvEndpoint", str),
}


def progress_bar(job: TrainingJob | Any, width: int = 30) -> str:
    done = int(width * job.progress / 100)
    return f"\r[{'#' * done}{'.' * (width - done)}] {job.progress:5.1f}%  epoch {job.epoch}/{job.total_epochs}"


class PrintingProgress(JobProgress):
    """Records progress like any worker and draws it on the terminal."""

    def on_progress(self, report: Any) -> None:
        super().on_progress(report)  # noted for the next progress event
        loss = f"  loss {report.loss:.4f}" + (f"  val {report.val_loss:.4f}" if report.val_loss is not None else "")
        sys.stdout.write(progress_bar(report) + loss)
        sys.stdout.flush()


class Command(BaseCommand):
    help = "Start a fine-tuning job and follow it to the end with a progress bar."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("model", help="AI model name, e.g. techanal-signal")
        parser.add_argument("--user", default="demo", help="who starts the job (needs finetune permission)")
        for option, (_, kind) in (OPTIONS | DISTRIBUTED_OPTIONS).items():
            parser.add_argument(f"--{option.replace('_', '-')}", dest=option, type=kind)
        parser.add_argument("--hyperparameters", type=json.loads, help="JSON, e.g. '{\"dropout\": 0.2}'")
        parser.add_argument(
            "--worker", action="store_true", help="leave the run to the django-q2 workers and only follow it"
        )

    def handle(self, *args: Any, model: str, user: str, worker: bool, **options: Any) -> None:
        actor = get_user_model().objects.filter(username=user, is_active=True).first()
        if actor is None:
            raise CommandError(f"no active user '{user}'")
        try:
            ai_model = selectors.ai_model_get(actor, model)
            body = {wire: options[opt] for opt, (wire, _) in OPTIONS.items() if options.get(opt) is not None}
            if options.get("hyperparameters") is not None:
                body["hyperparameters"] = options["hyperparameters"]
            distributed = {
                key: options[opt] for opt, (key, _) in DISTRIBUTED_OPTIONS.items() if options.get(opt) is not None
            }
            if distributed:  # a torchrun group instead of training in this process
                body["distributed"] = distributed
            resolved = training_config_resolve(model=ai_model, fields=body)
            job = services.training_job_start(
                actor=actor,
                model=ai_model,
                config=resolved.config,
                dataset=resolved.dataset,
                base_version=resolved.base_version,
            )
        except services.InvalidInput as exc:
            raise CommandError(f"invalid config: {json.dumps(exc.fields)}") from exc
        except services.ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"job {job.pk} queued for {ai_model.name} on {job.dataset.name}")
        if not worker:
            # Run here; if a worker claimed the job first, this only follows it.
            training_job_execute(job_id=job.pk, progress=PrintingProgress(job_id=job.pk))
        job = self._follow(job.pk)
        self.stdout.write("")
        version = job.version
        if job.status == "succeeded" and version is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{ai_model.name} {version.version}: accuracy {version.accuracy:.4f} "
                    f"(baseline {version.baselines.get('overallScore', float('nan')):.4f}), "
                    f"response time {version.response_time_ms:.3f} ms, status {version.status}"
                )
            )
        else:
            raise CommandError(f"job {job.pk} ended {job.status}: {job.error_code} {job.error}".strip())

    def _follow(self, job_id: int) -> TrainingJob:
        while True:
            job = TrainingJob.objects.select_related("version").get(pk=job_id)
            self.stdout.write(progress_bar(job), ending="")
            self.stdout.flush()
            if job.status in TERMINAL_JOB_STATUSES:
                return job
            time.sleep(0.5)
