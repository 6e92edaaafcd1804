"""Run a hyperparameter study from the command line, through the same validation and services as the API."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from models_mgmt import selectors, services
from models_mgmt.choices import LIVE_STUDY_STATUSES, JobStatus, TrialState
from models_mgmt.engine.search import DEFAULT_SPACE, SAMPLERS, space_check
from models_mgmt.models import Study, TrainingJob
from models_mgmt.services.studies import (
    MAX_STUDY_PARALLELISM,
    MAX_STUDY_TRIALS,
    study_config_refusals,
    study_start,
)
from models_mgmt.services.training_config import training_config_resolve
from models_mgmt.training.worker import training_job_execute

from .finetune import OPTIONS


def study_line(study: Study, width: int = 30) -> str:
    """One redrawn line: trials ended of all, the best cross-validated score so far, the state."""
    trials = list(study.trials.all())
    ended = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in trials)
    values = [t.value for t in trials if t.value is not None]
    done = int(width * ended / max(study.n_trials, 1))
    best = f"best {max(values):+.4f}" if values else "best —"
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    return (
        f"\r[{'#' * done}{'.' * (width - done)}] {ended}/{study.n_trials} trials  {best}  "
        f"pruned {pruned}  failed {failed}  {study.status}   "
    )


class Command(BaseCommand):
    help = "Start a hyperparameter study (trials judged walk-forward) and follow it with a progress bar."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("model", help="AI model name, e.g. techanal-signal")
        parser.add_argument("--user", default="demo", help="who starts the study (needs finetune permission)")
        parser.add_argument("--trials", type=int, default=20, help=f"number of trials (1-{MAX_STUDY_TRIALS})")
        parser.add_argument("--parallelism", type=int, default=1, help=f"trials at once (1-{MAX_STUDY_PARALLELISM})")
        parser.add_argument("--sampler", choices=SAMPLERS, default="tpe")
        parser.add_argument("--no-pruning", action="store_true", help="score every fold of every trial")
        parser.add_argument("--time-budget", type=int, dest="time_budget", help="seconds; no trial starts after")
        parser.add_argument("--space", type=json.loads, help=f"JSON search space; default {json.dumps(DEFAULT_SPACE)}")
        for option, (_, kind) in OPTIONS.items():
            if option != "evaluation":
                parser.add_argument(f"--{option.replace('_', '-')}", dest=option, type=kind)
        parser.add_argument("--hyperparameters", type=json.loads, help="JSON, fixed for every trial")
        parser.add_argument(
            "--worker", action="store_true", help="leave the trials to the django-q2 workers and only follow them"
        )

    def handle(self, *args: Any, model: str, user: str, worker: bool, **options: Any) -> None:
        actor = get_user_model().objects.filter(username=user, is_active=True).first()
        if actor is None:
            raise CommandError(f"no active user '{user}'")
        space = options.get("space") or DEFAULT_SPACE
        if not 1 <= options["trials"] <= MAX_STUDY_TRIALS or not 1 <= options["parallelism"] <= MAX_STUDY_PARALLELISM:
            raise CommandError(f"--trials must be 1-{MAX_STUDY_TRIALS}, --parallelism 1-{MAX_STUDY_PARALLELISM}")
        try:
            ai_model = selectors.ai_model_get(actor, model)
            problems = space_check(space, ai_model.family)
            if problems:
                raise CommandError(f"invalid space: {json.dumps(problems)}")
            body = {wire: options[opt] for opt, (wire, _) in OPTIONS.items() if options.get(opt) is not None}
            if options.get("hyperparameters") is not None:
                body["hyperparameters"] = options["hyperparameters"]
            refused = study_config_refusals(body)  # --device: the trials train on the worker's CPU
            if refused:
                raise services.InvalidInput("Invalid study config.", fields=refused)
            resolved = training_config_resolve(model=ai_model, fields=body)
            study = study_start(
                actor=actor,
                model=ai_model,
                config=resolved.config,
                dataset=resolved.dataset,
                space=space,
                n_trials=options["trials"],
                parallelism=options["parallelism"],
                sampler=options["sampler"],
                pruning=not options["no_pruning"],
                time_budget_s=options.get("time_budget"),
            )
        except services.InvalidInput as exc:
            raise CommandError(f"invalid config: {json.dumps(exc.fields)}") from exc
        except services.ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"study {study.pk} started for {ai_model.name} on {study.dataset.name}: {json.dumps(space)}")
        started = time.monotonic()
        while True:
            study.refresh_from_db()
            self.stdout.write(study_line(study), ending="")
            self.stdout.flush()
            if study.status not in LIVE_STUDY_STATUSES:
                break
            job = None if worker else TrainingJob.objects.filter(study=study, status=JobStatus.QUEUED).first()
            if job is not None:
                training_job_execute(job_id=job.pk)  # here; a worker that claimed it first only leaves it
            else:
                time.sleep(0.5)
        sys.stdout.write("\n")
        self._report(study, time.monotonic() - started)

    def _report(self, study: Study, wall_s: float) -> None:
        best, holdout = study.best or {}, study.holdout or {}
        self.stdout.write(f"wall time {wall_s:.1f} s; study {study.pk} {study.status}")
        if best:
            self.stdout.write(f"best trial {best['trialNumber']}: {json.dumps(best['params'])}")
            self.stdout.write(f"  cross-validated edge over baseline (walk-forward): {best['cvScore']:+.4f}")
        if holdout:
            self.stdout.write(
                self.style.SUCCESS(
                    f"  holdout {holdout['window']}: overallScore {holdout['overallScore']:.4f} "
                    f"(baseline {holdout['baseline']:.4f}, edge {holdout['edge']:+.4f}), version {holdout['version']}"
                )
            )
        if study.status != "finished":
            raise CommandError(f"study {study.pk} ended {study.status}: {study.error}".strip())
